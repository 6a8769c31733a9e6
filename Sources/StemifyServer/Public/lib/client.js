// The Stemify client: submit a song or a YouTube link, follow the job, cancel it.
// No dependencies: `fetch`, `FormData` and `EventSource` from the browser (or any runtime that
// has them). The names match the mock service it replaces.
/** A new owner token: keep it (it is the only way back to what you submit with it). */
export function newOwnerToken() {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    let binary = "";
    for (const byte of bytes)
        binary += String.fromCharCode(byte);
    return `sto_${btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}`;
}
/** An error the API answered with: its stable code, message and HTTP status. */
export class StemifyApiError extends Error {
    constructor(code, message, status, 
    /** Seconds to wait before retrying (rate limit). */
    retryAfter) {
        super(message);
        this.code = code;
        this.status = status;
        this.retryAfter = retryAfter;
        this.name = "StemifyApiError";
    }
}
/** The response to a request, or a `StemifyApiError` for a network failure or an error status. */
async function send(path, init, options = {}) {
    const doFetch = options.fetch ?? fetch;
    let response;
    try {
        const headers = new Headers(init.headers);
        if (options.token !== undefined && !headers.has("Authorization"))
            headers.set("Authorization", `Bearer ${options.token}`);
        response = await doFetch(`${options.baseUrl ?? ""}${path}`, { ...init, headers });
    }
    catch (error) {
        if (init.signal?.aborted)
            throw error;
        throw new StemifyApiError("network_error", `the server cannot be reached (${String(error)})`, 0);
    }
    if (!response.ok) {
        let body;
        try {
            body = (await response.json());
        }
        catch {
            body = undefined;
        }
        const retry = response.headers.get("Retry-After");
        throw new StemifyApiError(body?.error.code ?? "internal_error", body?.error.message ?? `HTTP ${response.status}`, response.status, retry === null ? undefined : Number(retry));
    }
    return response;
}
async function call(path, init, options = {}) {
    return (await (await send(path, init, options)).json());
}
/** The options as form fields. */
function optionFields(payload) {
    const fields = {};
    if (payload.model !== undefined)
        fields.model = payload.model;
    if (payload.outputFormat !== undefined)
        fields.output_format = payload.outputFormat;
    if (payload.normalize !== undefined)
        fields.normalize = String(payload.normalize);
    if (payload.removeVocals !== undefined)
        fields.remove_vocals = String(payload.removeVocals);
    if (payload.quality !== undefined)
        fields.quality = payload.quality;
    if (payload.numOverlap !== undefined)
        fields.num_overlap = String(payload.numOverlap);
    if (payload.callbackUrl !== undefined)
        fields.callback_url = payload.callbackUrl;
    return fields;
}
function fileName(file, name) {
    return name ?? ("name" in file ? String(file.name) : "audio");
}
/** Submits a separation; resolves as soon as the job is queued. */
export function requestStemSeparation(payload, options = {}) {
    const fields = optionFields(payload);
    if ("youtubeUrl" in payload || "uploadId" in payload) {
        const input = "youtubeUrl" in payload ? { youtube_url: payload.youtubeUrl } : { upload_id: payload.uploadId };
        return call("/api/stemify", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ ...fields, ...input }),
        }, options);
    }
    const form = new FormData();
    for (const [key, value] of Object.entries(fields))
        form.append(key, value);
    form.append("file", payload.file, fileName(payload.file, payload.fileName));
    return call("/api/stemify", { method: "POST", body: form }, options);
}
/**
 * Submits several songs with shared options (`POST /api/batches`); resolves when every song is
 * queued. One song failing its checks refuses the whole batch (the error names it); resumable
 * uploads of a refused batch can be sent again.
 */
export function requestBatch(songs, payload = {}, options = {}) {
    const fields = optionFields(payload);
    if (songs.every((song) => !("file" in song))) {
        const uploadIds = songs.flatMap((song) => ("uploadId" in song ? [song.uploadId] : []));
        const links = songs.flatMap((song) => ("youtubeUrl" in song ? [song.youtubeUrl] : []));
        return call("/api/batches", {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ ...fields, upload_id: uploadIds, youtube_url: links }),
        }, options);
    }
    const form = new FormData();
    for (const [key, value] of Object.entries(fields))
        form.append(key, value);
    for (const song of songs) {
        if ("file" in song)
            form.append("file", song.file, fileName(song.file, song.fileName));
        else if ("uploadId" in song)
            form.append("upload_id", song.uploadId);
        else
            form.append("youtube_url", song.youtubeUrl);
    }
    return call("/api/batches", { method: "POST", body: form }, options);
}
/** Each song's job, and the batch's progress and ETA. */
export function getBatch(id, options = {}) {
    return call(`/api/batches/${encodeURIComponent(id)}`, {}, options);
}
/** Cancels every song of the batch that has not finished; resolves to the batch afterwards. */
export function cancelBatch(id, options = {}) {
    return call(`/api/batches/${encodeURIComponent(id)}`, { method: "DELETE" }, options);
}
/** Where every stem of every finished song downloads as one ZIP. */
export function batchZipUrl(id, options = {}) {
    return `${options.baseUrl ?? ""}/api/batches/${encodeURIComponent(id)}/stems.zip`;
}
const tus = { "Tus-Resumable": "1.0.0" };
function base64(text) {
    let binary = "";
    for (const byte of new TextEncoder().encode(text))
        binary += String.fromCharCode(byte);
    return btoa(binary);
}
/** A page of your batches, newest first; pass `next_cursor` back as `cursor` for the next. */
export function listBatches(query = {}, options = {}) {
    const params = new URLSearchParams();
    if (query.limit !== undefined)
        params.set("limit", String(query.limit));
    if (query.cursor !== undefined)
        params.set("cursor", query.cursor);
    const search = params.toString();
    return call(`/api/batches${search ? `?${search}` : ""}`, {}, options);
}
/** A page of your jobs, newest first; pass `next_cursor` back as `cursor` for the next. */
export function listJobs(query = {}, options = {}) {
    const params = new URLSearchParams();
    if (query.limit !== undefined)
        params.set("limit", String(query.limit));
    if (query.cursor !== undefined)
        params.set("cursor", query.cursor);
    if (query.status !== undefined)
        params.set("status", query.status.join(","));
    const search = params.toString();
    return call(`/api/jobs${search ? `?${search}` : ""}`, {}, options);
}
/**
 * Uploads `file` with the tus 1.0 protocol (`/api/uploads`) and resolves to its upload id, for
 * `requestStemSeparation({ uploadId, ... })`. After a dropped connection it asks the server how
 * many bytes arrived (HEAD) and continues from there, so a large file is never sent twice.
 */
export async function uploadResumable(file, options = {}) {
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
    const serverOffset = async () => Number((await send(path, { method: "HEAD", headers: tus, signal }, options)).headers.get("Upload-Offset"));
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
        }
        catch (error) {
            const e = error;
            // A dropped connection, a server busy with the cut request, a damaged chunk: ask where
            // the upload stands and go on from there. Anything else (gone, expired) is final.
            const retryable = e.code === "network_error" || e.code === "upload_offset_mismatch" || e.code === "checksum_mismatch"
                || e.status >= 500;
            if (signal?.aborted || !retryable || ++failures > (options.retries ?? 6))
                throw error;
            await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** (failures - 1)));
            try {
                offset = await serverOffset();
                options.onProgress?.(offset, file.size);
            }
            catch (headError) {
                if (headError.code !== "network_error")
                    throw headError;
            }
        }
    }
    return id;
}
/** The job's status, progress, ETA, queue position and stems. */
export function getJob(id, options = {}) {
    return call(`/api/jobs/${encodeURIComponent(id)}`, {}, options);
}
/** Cancels and deletes a job. */
export async function cancelJob(id, options = {}) {
    await call(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }, options);
}
/** A stem's waveform peaks, from its `peaks_url`. */
export function getPeaks(peaksUrl, options = {}) {
    return call(peaksUrl, {}, options);
}
/** A finished job's stems mixed at the given volumes, pans and mutes, rendered by the server. */
export async function exportMix(jobId, mix, options = {}) {
    const response = await send(`/api/jobs/${encodeURIComponent(jobId)}/mix`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(mix),
    }, options);
    return response.blob();
}
/** The models the server offers. */
export async function getModels(options = {}) {
    return (await call("/api/models", {}, options)).models;
}
/** The server's limits (upload size, duration, rate, formats). */
export function getLimits(options = {}) {
    return call("/api/limits", {}, options);
}
const terminal = new Set(["done", "failed", "cancelled"]);
/**
 * Follows a resource over its event stream, falling back to polling `get` when the stream cannot
 * be opened or breaks, until `finished` says so or it is gone (`goneCode`).
 */
function watch(eventsPath, get, finished, goneCode, onUpdate, options) {
    let stopped = false;
    let source;
    let timer;
    const stop = () => {
        stopped = true;
        source?.close();
        if (timer !== undefined)
            clearTimeout(timer);
    };
    const deliver = (value) => {
        if (stopped)
            return;
        onUpdate(value);
        if (finished(value))
            stop();
    };
    const poll = async () => {
        if (stopped)
            return;
        try {
            deliver(await get());
        }
        catch (error) {
            const e = error;
            if (e.code === goneCode) {
                options.onError?.(e);
                stop();
                return;
            }
        }
        if (!stopped)
            timer = setTimeout(poll, options.pollIntervalMs ?? 1000);
    };
    if (typeof EventSource === "undefined") {
        void poll();
        return stop;
    }
    // An EventSource sends no headers: the token goes as `access_token` (RFC 6750 §2.3).
    const query = options.token === undefined ? "" : `${eventsPath.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(options.token)}`;
    source = new EventSource(`${options.baseUrl ?? ""}${eventsPath}${query}`);
    source.addEventListener("status", (event) => deliver(JSON.parse(event.data)));
    source.onerror = () => {
        // The stream ended (a finished job or batch closes it) or broke: polling takes over.
        source?.close();
        source = undefined;
        if (!stopped)
            void poll();
    };
    return stop;
}
/**
 * Calls `onUpdate` with the job each time it changes, until it is done, failed or cancelled:
 * over the event stream (`/api/jobs/{id}/events`), falling back to polling when the stream
 * cannot be opened or breaks. Returns a function that stops watching.
 */
export function watchJob(id, onUpdate, options = {}) {
    return watch(`/api/jobs/${encodeURIComponent(id)}/events`, () => getJob(id, options), (job) => terminal.has(job.status), "job_not_found", onUpdate, options);
}
/** Whether every song of the batch has finished (done, failed or cancelled). */
export function batchFinished(batch) {
    return ["done", "partially_done", "cancelled", "failed"].includes(batch.status);
}
/**
 * Calls `onUpdate` with the batch each time one of its songs changes, until every song has
 * finished (`/api/batches/{id}/events`, polling as the fallback). Returns a function that stops.
 */
export function watchBatch(id, onUpdate, options = {}) {
    return watch(`/api/batches/${encodeURIComponent(id)}/events`, () => getBatch(id, options), (batch) => batchFinished(batch), "batch_not_found", onUpdate, options);
}
