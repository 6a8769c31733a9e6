import type { Accepted, Batch, ErrorCode, Job, JobStatus, Limits, MixRequest, Model, OutputFormat, Peaks, Quality } from "./types.js";
export type { Accepted, Batch, BatchStatus, JobOptions, JobWebhook, WebhookDelivery, BatchSong, ErrorBody, ErrorCode, Job, JobError, JobMetrics, JobStatus, Limits, MixRequest, Model, OutputFormat, Peaks, Quality, Stem, StemMix, } from "./types.js";
/** Where the API is and how to reach it. */
export interface ClientOptions {
    /** Origin of the Stemify server; "" (the default) is the page's own. */
    baseUrl?: string;
    fetch?: typeof fetch;
    /**
     * Who you are: an API key (`sk_…`) where the server requires keys, otherwise an owner token
     * (`sto_…`, from `newOwnerToken()` or the `owner_token` of your first submission). Sent as
     * `Authorization: Bearer`; only its holder sees the jobs, batches and uploads made with it.
     * In the server's own page the cookie it sets does this and no token is needed.
     */
    token?: string;
}
/** A new owner token: keep it (it is the only way back to what you submit with it). */
export declare function newOwnerToken(): string;
/** Options of a separation, as the form fields of `POST /api/stemify`. */
export interface StemSeparationOptions {
    model?: string;
    outputFormat?: OutputFormat;
    normalize?: boolean;
    /** Karaoke: also write an instrumental (everything but the vocals). */
    removeVocals?: boolean;
    quality?: Quality;
    /** RoFormer and SCNet models: overlapping chunks per chunk length (1–16); time grows in proportion. */
    numOverlap?: number;
    /** Where the job's terminal state is POSTed, signed with `Stemify-Signature` (see `verifyWebhook` in the README). */
    callbackUrl?: string;
}
/** A file to upload, a finished resumable upload (`uploadResumable`), or a YouTube link, plus options. */
export declare type StemSeparationPayload = ({
    file: Blob;
    fileName?: string;
} | {
    uploadId: string;
} | {
    youtubeUrl: string;
}) & StemSeparationOptions;
/** An error the API answered with: its stable code, message and HTTP status. */
export declare class StemifyApiError extends Error {
    readonly code: ErrorCode | "network_error";
    readonly status: number;
    /** Seconds to wait before retrying (rate limit). */
    readonly retryAfter?: number | undefined;
    constructor(code: ErrorCode | "network_error", message: string, status: number, 
    /** Seconds to wait before retrying (rate limit). */
    retryAfter?: number | undefined);
}
/** Submits a separation; resolves as soon as the job is queued. */
export declare function requestStemSeparation(payload: StemSeparationPayload, options?: ClientOptions): Promise<Accepted>;
/** One song of a batch: a file, a finished resumable upload, or a YouTube link. */
export declare type BatchSongInput = {
    file: Blob;
    fileName?: string;
} | {
    uploadId: string;
} | {
    youtubeUrl: string;
};
/**
 * Submits several songs with shared options (`POST /api/batches`); resolves when every song is
 * queued. One song failing its checks refuses the whole batch (the error names it); resumable
 * uploads of a refused batch can be sent again.
 */
export declare function requestBatch(songs: BatchSongInput[], payload?: StemSeparationOptions, options?: ClientOptions): Promise<Batch>;
/** Each song's job, and the batch's progress and ETA. */
export declare function getBatch(id: string, options?: ClientOptions): Promise<Batch>;
/** Cancels every song of the batch that has not finished; resolves to the batch afterwards. */
export declare function cancelBatch(id: string, options?: ClientOptions): Promise<Batch>;
/** Where every stem of every finished song downloads as one ZIP. */
export declare function batchZipUrl(id: string, options?: ClientOptions): string;
export interface ResumableUploadOptions extends ClientOptions {
    /** Bytes per request (default 4 MiB): progress is reported after each. */
    chunkSize?: number;
    /** Bytes the server has stored, of `total`. */
    onProgress?: (stored: number, total: number) => void;
    /** Aborts the upload (the server keeps what it has until the upload expires). */
    signal?: AbortSignal;
    /** Network failures in a row before giving up (default 6), waiting 0.5 s, 1 s, 2 s, … between. */
    retries?: number;
    /** Continue an upload created earlier (after a page reload) instead of creating one. */
    uploadId?: string;
    /** File name sent with the upload (default the File's name). */
    fileName?: string;
}
/** A page of your batches, newest first; pass `next_cursor` back as `cursor` for the next. */
export declare function listBatches(query?: {
    limit?: number;
    cursor?: string;
}, options?: ClientOptions): Promise<{
    batches: Batch[];
    next_cursor: string | null;
}>;
/** A page of your jobs, newest first; pass `next_cursor` back as `cursor` for the next. */
export declare function listJobs(query?: {
    limit?: number;
    cursor?: string;
    status?: JobStatus[];
}, options?: ClientOptions): Promise<{
    jobs: Job[];
    next_cursor: string | null;
}>;
/**
 * Uploads `file` with the tus 1.0 protocol (`/api/uploads`) and resolves to its upload id, for
 * `requestStemSeparation({ uploadId, ... })`. After a dropped connection it asks the server how
 * many bytes arrived (HEAD) and continues from there, so a large file is never sent twice.
 */
export declare function uploadResumable(file: Blob, options?: ResumableUploadOptions): Promise<string>;
/** The job's status, progress, ETA, queue position and stems. */
export declare function getJob(id: string, options?: ClientOptions): Promise<Job>;
/** Cancels and deletes a job. */
export declare function cancelJob(id: string, options?: ClientOptions): Promise<void>;
/** A stem's waveform peaks, from its `peaks_url`. */
export declare function getPeaks(peaksUrl: string, options?: ClientOptions): Promise<Peaks>;
/** A finished job's stems mixed at the given volumes, pans and mutes, rendered by the server. */
export declare function exportMix(jobId: string, mix: MixRequest, options?: ClientOptions): Promise<Blob>;
/** The models the server offers. */
export declare function getModels(options?: ClientOptions): Promise<Model[]>;
/** The server's limits (upload size, duration, rate, formats). */
export declare function getLimits(options?: ClientOptions): Promise<Limits>;
export interface WatchOptions extends ClientOptions {
    /** Polling period when the event stream is unavailable (default 1000 ms). */
    pollIntervalMs?: number;
    /** Called once if watching fails for good (the job vanished, or a non-retryable error). */
    onError?: (error: StemifyApiError) => void;
}
/**
 * Calls `onUpdate` with the job each time it changes, until it is done, failed or cancelled:
 * over the event stream (`/api/jobs/{id}/events`), falling back to polling when the stream
 * cannot be opened or breaks. Returns a function that stops watching.
 */
export declare function watchJob(id: string, onUpdate: (job: Job) => void, options?: WatchOptions): () => void;
/** Whether every song of the batch has finished (done, failed or cancelled). */
export declare function batchFinished(batch: Batch): boolean;
/**
 * Calls `onUpdate` with the batch each time one of its songs changes, until every song has
 * finished (`/api/batches/{id}/events`, polling as the fallback). Returns a function that stops.
 */
export declare function watchBatch(id: string, onUpdate: (batch: Batch) => void, options?: WatchOptions): () => void;
