// The Stemify client: submit a song or a YouTube link, follow the job, cancel it.
// No dependencies: `fetch`, `FormData` and `EventSource` from the browser (or any runtime that
// has them). The names match the mock service it replaces.

import type { Accepted, Batch, ErrorBody, ErrorCode, Job, JobStatus, Limits, MixRequest, Model, OutputFormat, Peaks, Quality } from "./types.js";

export type {
  Accepted, Batch, BatchStatus, JobOptions, JobWebhook, WebhookDelivery, BatchSong, ErrorBody, ErrorCode, Job, JobError, JobMetrics, JobStatus, Limits, MixRequest, Model, OutputFormat,
  Peaks, Quality, Stem, StemMix,
} from "./types.js";

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
export function newOwnerToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `sto_${btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}`;
}

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
export type StemSeparationPayload =
  & ({ file: Blob; fileName?: string } | { uploadId: string } | { youtubeUrl: string })
  & StemSeparationOptions;

/** An error the API answered with: its stable code, message and HTTP status. */
export class StemifyApiError extends Error {
  constructor(
    readonly code: ErrorCode | "network_error",
    message: string,
    readonly status: number,
    /** Seconds to wait before retrying (rate limit). */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "StemifyApiError";
  }
}

/** The response to a request, or a `StemifyApiError` for a network failure or an error status. */
async function send(path: string, init: RequestInit, options: ClientOptions = {}): Promise<Response> {
  const doFetch = options.fetch ?? fetch;
  let response: Response;
  try {
    const headers = new Headers(init.headers);
    if (options.token !== undefined && !headers.has("Authorization")) headers.set("Authorization", `Bearer ${options.token}`);
    response = await doFetch(`${options.baseUrl ?? ""}${path}`, { ...init, headers });
  } catch (error) {
    if (init.signal?.aborted) throw error;
    throw new StemifyApiError("network_error", `the server cannot be reached (${String(error)})`, 0);
  }
  if (!response.ok) {
    let body: ErrorBody | undefined;
    try {
      body = (await response.json()) as ErrorBody;
    } catch {
      body = undefined;
    }
    const retry = response.headers.get("Retry-After");
    throw new StemifyApiError(
      body?.error.code ?? "internal_error",
      body?.error.message ?? `HTTP ${response.status}`,
      response.status,
      retry === null ? undefined : Number(retry),
    );
  }
  return response;
}

async function call<T>(path: string, init: RequestInit, options: ClientOptions = {}): Promise<T> {
  return (await (await send(path, init, options)).json()) as T;
}

/** The options as form fields. */
function optionFields(payload: StemSeparationOptions): Record<string, string> {
  const fields: Record<string, string> = {};
  if (payload.model !== undefined) fields.model = payload.model;
  if (payload.outputFormat !== undefined) fields.output_format = payload.outputFormat;
  if (payload.normalize !== undefined) fields.normalize = String(payload.normalize);
  if (payload.removeVocals !== undefined) fields.remove_vocals = String(payload.removeVocals);
  if (payload.quality !== undefined) fields.quality = payload.quality;
  if (payload.numOverlap !== undefined) fields.num_overlap = String(payload.numOverlap);
  if (payload.callbackUrl !== undefined) fields.callback_url = payload.callbackUrl;
  return fields;
}

function fileName(file: Blob, name?: string): string {
  return name ?? ("name" in file ? String((file as File).name) : "audio");
}

/** Submits a separation; resolves as soon as the job is queued. */
export function requestStemSeparation(payload: StemSeparationPayload, options: ClientOptions = {}): Promise<Accepted> {
  const fields = optionFields(payload);
  if ("youtubeUrl" in payload || "uploadId" in payload) {
    const input = "youtubeUrl" in payload ? { youtube_url: payload.youtubeUrl } : { upload_id: payload.uploadId };
    return call<Accepted>("/api/stemify", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...fields, ...input }),
    }, options);
  }
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  form.append("file", payload.file, fileName(payload.file, payload.fileName));
  return call<Accepted>("/api/stemify", { method: "POST", body: form }, options);
}

/** One song of a batch: a file, a finished resumable upload, or a YouTube link. */
export type BatchSongInput = { file: Blob; fileName?: string } | { uploadId: string } | { youtubeUrl: string };

/**
 * Submits several songs with shared options (`POST /api/batches`); resolves when every song is
 * queued. One song failing its checks refuses the whole batch (the error names it); resumable
 * uploads of a refused batch can be sent again.
 */
export function requestBatch(songs: BatchSongInput[], payload: StemSeparationOptions = {}, options: ClientOptions = {}): Promise<Batch> {
  const fields = optionFields(payload);
  if (songs.every((song) => !("file" in song))) {
    const uploadIds = songs.flatMap((song) => ("uploadId" in song ? [song.uploadId] : []));
    const links = songs.flatMap((song) => ("youtubeUrl" in song ? [song.youtubeUrl] : []));
    return call<Batch>("/api/batches", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...fields, upload_id: uploadIds, youtube_url: links }),
    }, options);
  }
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  for (const song of songs) {
    if ("file" in song) form.append("file", song.file, fileName(song.file, song.fileName));
    else if ("uploadId" in song) form.append("upload_id", song.uploadId);
    else form.append("youtube_url", song.youtubeUrl);
  }
  return call<Batch>("/api/batches", { method: "POST", body: form }, options);
}

/** Each song's job, and the batch's progress and ETA. */
export function getBatch(id: string, options: ClientOptions = {}): Promise<Batch> {
  return call<Batch>(`/api/batches/${encodeURIComponent(id)}`, {}, options);
}

/** Cancels every song of the batch that has not finished; resolves to the batch afterwards. */
export function cancelBatch(id: string, options: ClientOptions = {}): Promise<Batch> {
  return call<Batch>(`/api/batches/${encodeURIComponent(id)}`, { method: "DELETE" }, options);
}

/** Where every stem of every finished song downloads as one ZIP. */
export function batchZipUrl(id: string, options: ClientOptions = {}): string {
  return `${options.baseUrl ?? ""}/api/batches/${encodeURIComponent(id)}/stems.zip`;
}

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

const tus = { "Tus-Resumable": "1.0.0" };

function base64(text: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** A page of your batches, newest first; pass `next_cursor` back as `cursor` for the next. */
export function listBatches(
  query: { limit?: number; cursor?: string } = {}, options: ClientOptions = {},
): Promise<{ batches: Batch[]; next_cursor: string | null }> {
  const params = new URLSearchParams();
  if (query.limit !== undefined) params.set("limit", String(query.limit));
  if (query.cursor !== undefined) params.set("cursor", query.cursor);
  const search = params.toString();
  return call(`/api/batches${search ? `?${search}` : ""}`, {}, options);
}

/** A page of your jobs, newest first; pass `next_cursor` back as `cursor` for the next. */
export function listJobs(
  query: { limit?: number; cursor?: string; status?: JobStatus[] } = {}, options: ClientOptions = {},
): Promise<{ jobs: Job[]; next_cursor: string | null }> {
  const params = new URLSearchParams();
  if (query.limit !== undefined) params.set("limit", String(query.limit));
  if (query.cursor !== undefined) params.set("cursor", query.cursor);
  if (query.status !== undefined) params.set("status", query.status.join(","));
  const search = params.toString();
  return call(`/api/jobs${search ? `?${search}` : ""}`, {}, options);
}

/**
 * Uploads `file` with the tus 1.0 protocol (`/api/uploads`) and resolves to its upload id, for
 * `requestStemSeparation({ uploadId, ... })`. After a dropped connection it asks the server how
 * many bytes arrived (HEAD) and continues from there, so a large file is never sent twice.
 */
export async function uploadResumable(file: Blob, options: ResumableUploadOptions = {}): Promise<string> {
  const chunkSize = options.chunkSize ?? 4 * 1024 * 1024;
  const signal = options.signal;
  let id = options.uploadId;
  if (id === undefined) {
    const name = fileName(file, options.fileName);
    const created = await send("/api/uploads", {
      method: "POST",
      headers: { ...tus, "Upload-Length": String(file.size), "Upload-Metadata": `filename ${base64(name)}` },
      signal,
    }, options);
    id = (created.headers.get("Location") ?? "").split("/").pop() ?? "";
  }
  const path = `/api/uploads/${encodeURIComponent(id)}`;
  const serverOffset = async () =>
    Number((await send(path, { method: "HEAD", headers: tus, signal }, options)).headers.get("Upload-Offset"));
  let offset = options.uploadId === undefined ? 0 : await serverOffset();
  let failures = 0;
  options.onProgress?.(offset, file.size);
  while (offset < file.size) {
    const end = Math.min(file.size, offset + chunkSize);
    try {
      const response = await send(path, {
        method: "PATCH",
        headers: { ...tus, "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" },
        body: file.slice(offset, end),
        signal,
      }, options);
      offset = Number(response.headers.get("Upload-Offset"));
      failures = 0;
      options.onProgress?.(offset, file.size);
    } catch (error) {
      const e = error as StemifyApiError;
      // A dropped connection, a server busy with the cut request, a damaged chunk: ask where
      // the upload stands and go on from there. Anything else (gone, expired) is final.
      const retryable = e.code === "network_error" || e.code === "upload_offset_mismatch" || e.code === "checksum_mismatch"
        || e.status >= 500;
      if (signal?.aborted || !retryable || ++failures > (options.retries ?? 6)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** (failures - 1)));
      try {
        offset = await serverOffset();
        options.onProgress?.(offset, file.size);
      } catch (headError) {
        if ((headError as StemifyApiError).code !== "network_error") throw headError;
      }
    }
  }
  return id;
}

/** The job's status, progress, ETA, queue position and stems. */
export function getJob(id: string, options: ClientOptions = {}): Promise<Job> {
  return call<Job>(`/api/jobs/${encodeURIComponent(id)}`, {}, options);
}

/** Cancels and deletes a job. */
export async function cancelJob(id: string, options: ClientOptions = {}): Promise<void> {
  await call<unknown>(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }, options);
}

/** A stem's waveform peaks, from its `peaks_url`. */
export function getPeaks(peaksUrl: string, options: ClientOptions = {}): Promise<Peaks> {
  return call<Peaks>(peaksUrl, {}, options);
}

/** A finished job's stems mixed at the given volumes, pans and mutes, rendered by the server. */
export async function exportMix(jobId: string, mix: MixRequest, options: ClientOptions = {}): Promise<Blob> {
  const response = await send(`/api/jobs/${encodeURIComponent(jobId)}/mix`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(mix),
  }, options);
  return response.blob();
}

/** The models the server offers. */
export async function getModels(options: ClientOptions = {}): Promise<Model[]> {
  return (await call<{ models: Model[] }>("/api/models", {}, options)).models;
}

/** The server's limits (upload size, duration, rate, formats). */
export function getLimits(options: ClientOptions = {}): Promise<Limits> {
  return call<Limits>("/api/limits", {}, options);
}

export interface WatchOptions extends ClientOptions {
  /** Polling period when the event stream is unavailable (default 1000 ms). */
  pollIntervalMs?: number;
  /** Called once if watching fails for good (the job vanished, or a non-retryable error). */
  onError?: (error: StemifyApiError) => void;
}

const terminal = new Set(["done", "failed", "cancelled"]);

/**
 * Follows a resource over its event stream, falling back to polling `get` when the stream cannot
 * be opened or breaks, until `finished` says so or it is gone (`goneCode`).
 */
function watch<T>(
  eventsPath: string,
  get: () => Promise<T>,
  finished: (value: T) => boolean,
  goneCode: ErrorCode,
  onUpdate: (value: T) => void,
  options: WatchOptions,
): () => void {
  let stopped = false;
  let source: EventSource | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    stopped = true;
    source?.close();
    if (timer !== undefined) clearTimeout(timer);
  };
  const deliver = (value: T) => {
    if (stopped) return;
    onUpdate(value);
    if (finished(value)) stop();
  };
  const poll = async () => {
    if (stopped) return;
    try {
      deliver(await get());
    } catch (error) {
      const e = error as StemifyApiError;
      if (e.code === goneCode) {
        options.onError?.(e);
        stop();
        return;
      }
    }
    if (!stopped) timer = setTimeout(poll, options.pollIntervalMs ?? 1000);
  };
  if (typeof EventSource === "undefined") {
    void poll();
    return stop;
  }
  // An EventSource sends no headers: the token goes as `access_token` (RFC 6750 §2.3).
  const query = options.token === undefined ? "" : `${eventsPath.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(options.token)}`;
  source = new EventSource(`${options.baseUrl ?? ""}${eventsPath}${query}`);
  source.addEventListener("status", (event) => deliver(JSON.parse((event as MessageEvent<string>).data) as T));
  source.onerror = () => {
    // The stream ended (a finished job or batch closes it) or broke: polling takes over.
    source?.close();
    source = undefined;
    if (!stopped) void poll();
  };
  return stop;
}

/**
 * Calls `onUpdate` with the job each time it changes, until it is done, failed or cancelled:
 * over the event stream (`/api/jobs/{id}/events`), falling back to polling when the stream
 * cannot be opened or breaks. Returns a function that stops watching.
 */
export function watchJob(id: string, onUpdate: (job: Job) => void, options: WatchOptions = {}): () => void {
  return watch(`/api/jobs/${encodeURIComponent(id)}/events`, () => getJob(id, options), (job) => terminal.has(job.status),
    "job_not_found", onUpdate, options);
}

/** Whether every song of the batch has finished (done, failed or cancelled). */
export function batchFinished(batch: Batch): boolean {
  return ["done", "partially_done", "cancelled", "failed"].includes(batch.status);
}

/**
 * Calls `onUpdate` with the batch each time one of its songs changes, until every song has
 * finished (`/api/batches/{id}/events`, polling as the fallback). Returns a function that stops.
 */
export function watchBatch(id: string, onUpdate: (batch: Batch) => void, options: WatchOptions = {}): () => void {
  return watch(`/api/batches/${encodeURIComponent(id)}/events`, () => getBatch(id, options),
    (batch) => batchFinished(batch), "batch_not_found", onUpdate, options);
}
