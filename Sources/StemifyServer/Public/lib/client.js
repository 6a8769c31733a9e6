// The Stemify client: submit a song or a YouTube link, follow the job, cancel it.
// No dependencies: `fetch`, `FormData` and `EventSource` from the browser (or any runtime that
// has them). The names match the mock service it replaces.
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
        response = await doFetch(`${options.baseUrl ?? ""}${path}`, init);
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
/** Submits a separation; resolves as soon as the job is queued. */
export function requestStemSeparation(payload, options = {}) {
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
    const name = payload.fileName ?? ("name" in payload.file ? String(payload.file.name) : "audio");
    form.append("file", payload.file, name);
    return call("/api/stemify", { method: "POST", body: form }, options);
}
const tus = { "Tus-Resumable": "1.0.0" };
function base64(text) {
    let binary = "";
    for (const byte of new TextEncoder().encode(text))
        binary += String.fromCharCode(byte);
    return btoa(binary);
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
        const name = options.fileName ?? ("name" in file ? String(file.name) : "audio");
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
 * Calls `onUpdate` with the job each time it changes, until it is done, failed or cancelled:
 * over the event stream (`/api/jobs/{id}/events`), falling back to polling when the stream
 * cannot be opened or breaks. Returns a function that stops watching.
 */
export function watchJob(id, onUpdate, options = {}) {
    let stopped = false;
    let source;
    let timer;
    const stop = () => {
        stopped = true;
        source?.close();
        if (timer !== undefined)
            clearTimeout(timer);
    };
    const deliver = (job) => {
        if (stopped)
            return;
        onUpdate(job);
        if (terminal.has(job.status))
            stop();
    };
    const poll = async () => {
        if (stopped)
            return;
        try {
            deliver(await getJob(id, options));
        }
        catch (error) {
            const e = error;
            if (e.code === "job_not_found") {
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
    source = new EventSource(`${options.baseUrl ?? ""}/api/jobs/${encodeURIComponent(id)}/events`);
    source.addEventListener("status", (event) => deliver(JSON.parse(event.data)));
    source.onerror = () => {
        // The stream ended (a finished job closes it) or broke: polling takes over from here.
        source?.close();
        source = undefined;
        if (!stopped)
            void poll();
    };
    return stop;
}
