// Types of the Stemify HTTP API. They mirror the schemas of /openapi.yaml
// (Sources/StemifyServer/Public/openapi.yaml); a test fails when the two drift apart.

export type ErrorCode =
  | "missing_input" | "invalid_request" | "empty_file" | "file_too_large" | "unsupported_format"
  | "invalid_audio" | "audio_too_long" | "invalid_youtube_url" | "youtube_playlist"
  | "video_too_long" | "video_blocked" | "youtube_unavailable" | "unknown_model"
  | "model_unavailable" | "invalid_option" | "rate_limited" | "job_not_found" | "stem_not_found"
  | "not_found" | "upload_not_found" | "upload_expired" | "upload_offset_mismatch"
  | "upload_incomplete" | "checksum_mismatch" | "tus_version_unsupported" | "invalid_content_type"
  | "invalid_filename" | "invalid_batch" | "batch_not_found" | "invalid_mix"
  | "method_not_allowed" | "unauthorized" | "forbidden" | "upload_length_exceeded" | "idempotency_key_reused"
  | "idempotency_key_in_use"
  | "separation_failed" | "unavailable" | "internal_error";

export type BatchStatus = "queued" | "running" | "done" | "partially_done" | "cancelled" | "failed";

export type JobStatus =
  | "queued" | "downloading" | "decoding" | "separating" | "encoding" | "done" | "failed" | "cancelled";

export type OutputFormat = "wav" | "mp3" | "flac";

export type Quality = "fast" | "balanced" | "best";

/** `components.schemas.Accepted` */
export interface Accepted {
  job_id: string;
  status: "queued";
  status_url: string;
  events_url: string;
  /** Only when the request carried no token: the owner token that alone reads the job. */
  owner_token?: string;
}

/** `components.schemas.Job.properties.stems.items` */
export interface Stem {
  name: string;
  url: string;
  format: OutputFormat;
  bytes: number;
  duration: number;
  /** The stem's waveform peaks (same origin); null for stems made before peaks were written. */
  peaks_url?: string | null;
  /** The stem as 16-bit WAV, for players that read exact sample windows of every stem (same origin). */
  playback_url?: string | null;
}

/** `components.schemas.Peaks`: the loudest sample of any channel per window, in 1/scale of full scale. */
export interface Peaks {
  sample_rate: number;
  samples_per_peak: number;
  frames: number;
  scale: number;
  peaks: number[];
}

/** `components.schemas.MixRequest.properties.stems.additionalProperties`: one stem in an exported mix. */
export interface StemMix {
  /** Linear gain 0–2 (default 1). */
  volume?: number;
  /** −1 left … 1 right, Web Audio's equal-power law (default 0). */
  pan?: number;
  muted?: boolean;
}

/** `components.schemas.MixRequest` */
export interface MixRequest {
  format?: OutputFormat;
  /** By stem name; stems left out play at volume 1, centred, except a karaoke job's `instrumental`, which stays out unless named. */
  stems?: Record<string, StemMix>;
  /** Tempo factor 0.5–1.5, pitch kept (default 1). */
  speed?: number;
  /** Transpose −6…6 semitones, tempo kept (default 0). */
  semitones?: number;
}

/** `components.schemas.Job.properties.error` */
export interface JobError {
  code?: ErrorCode;
  message?: string;
}

/** `components.schemas.Job.properties.metrics` */
export interface JobMetrics {
  processing_seconds?: number;
  audio_seconds?: number;
  input_format?: string;
  output_bytes?: number;
  cache_hit?: boolean;
}

/** `components.schemas.Job` */
export interface Job {
  job_id: string;
  status: JobStatus;
  stage?: string | null;
  progress: number;
  eta_seconds?: number | null;
  queue_position?: number | null;
  model: string;
  created_at: string;
  error?: JobError | null;
  stems: Stem[];
  metrics?: JobMetrics | null;
  status_url: string;
  events_url: string;
  /** Every stem as one ZIP, once the job is done. */
  zip_url: string;
  /** What was asked for, as the job runs it (the quality preset resolved). */
  options: JobOptions;
  /** The uploaded file's name or the link. */
  input_name: string;
  started_at?: string | null;
  /** When it finished: done, failed or cancelled. */
  finished_at?: string | null;
  /** When a finished job and its stems are removed. */
  expires_at?: string | null;
  /** With a callback_url (`getJob` only): the URL and every delivery so far. */
  webhook?: JobWebhook | null;
}

/** `components.schemas.Job.properties.webhook` */
export interface JobWebhook {
  url?: string;
  deliveries?: WebhookDelivery[];
}

/** `components.schemas.WebhookDelivery` */
export interface WebhookDelivery {
  id: string;
  job_id: string;
  url: string;
  event: "job.done" | "job.failed" | "job.cancelled";
  state: "pending" | "delivered" | "failed";
  created_at: number;
  next_attempt_at: number;
  attempts: { at: number; status?: number | null; error?: string | null }[];
}

/** `components.schemas.JobOptions` */
export interface JobOptions {
  model: string;
  output_format: OutputFormat;
  normalize: boolean;
  remove_vocals: boolean;
  shifts: number;
  overlap: number;
  num_overlap?: number | null;
  callback_url?: string | null;
}

/** `components.schemas.BatchSong` */
export interface BatchSong {
  job_id: string;
  /** The file name or link as sent. */
  name: string;
  /** The job's status, or "deleted" once it was cancelled or expired. */
  status: JobStatus | "deleted";
  job?: Job | null;
}

/** `components.schemas.Batch` */
export interface Batch {
  batch_id: string;
  /** Once every song finished: "done" (all), "partially_done" (some), "cancelled" (none done, some cancelled), "failed". */
  status: BatchStatus;
  progress: number;
  eta_seconds?: number | null;
  created_at: string;
  /** Songs per job status (and "deleted"). */
  counts: Record<string, number>;
  songs: BatchSong[];
  status_url: string;
  events_url: string;
  zip_url: string;
  /** Only in the answer to a submission that carried no token. */
  owner_token?: string;
}

/** `components.schemas.Model` */
export interface Model {
  name: string;
  description: string;
  family: "demucs" | "bs_roformer" | "mel_band_roformer" | "scnet";
  sources: string[];
  available: boolean;
  /** Wall time per second of audio relative to htdemucs. */
  relative_cost: number;
  /** RoFormer and SCNet models: the configuration's overlap, at which `relative_cost` was measured. */
  num_overlap?: number;
  /** Published SDR in dB per stem (or "average"). */
  sdr?: Record<string, number>;
  sdr_source?: string;
  licence?: string;
}

/** `components.schemas.Limits` */
export interface Limits {
  max_file_size: number;
  max_batch_size: number;
  max_duration_seconds: number;
  rate_limit: number;
  rate_limit_period_seconds: number;
  /** Songs you may still submit now (null without a limit). */
  rate_limit_remaining?: number | null;
  /** Seconds until your oldest counted song leaves the window. */
  rate_limit_reset_seconds?: number | null;
  output_formats: OutputFormat[];
  qualities: Quality[];
  accepted_extensions: string[];
}

/** `components.schemas.Error` */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}
