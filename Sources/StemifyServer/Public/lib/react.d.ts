import { type Batch, type BatchSongInput, type ClientOptions, type Job, type StemSeparationOptions, type StemSeparationPayload } from "./client.js";
export interface UseStemSeparation {
    /** Every job this hook started or watched, by id, as last seen. */
    jobs: Record<string, Job>;
    /** Submits a separation and starts following it; resolves with the job id. */
    requestStemSeparation: (payload: StemSeparationPayload) => Promise<string>;
    /** Follows a job (for example one from an earlier visit) until it ends. */
    pollJobStatus: (id: string) => void;
    cancelJob: (id: string) => Promise<void>;
    /** Every batch this hook started or watched, by id, as last seen. */
    batches: Record<string, Batch>;
    /** Submits several songs with shared options and follows the batch; resolves with its id. */
    requestBatch: (songs: BatchSongInput[], payload?: StemSeparationOptions) => Promise<string>;
    /** Follows a batch until every song has finished. */
    pollBatchStatus: (id: string) => void;
    /** Cancels the songs of the batch that have not finished. */
    cancelBatch: (id: string) => Promise<void>;
}
export declare function useStemSeparation(options?: ClientOptions): UseStemSeparation;
