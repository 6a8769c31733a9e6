// A React hook over the client, with the names of the mock service it replaces.
// React is a peer: this file only needs its types (a small declaration in react-shim.d.ts
// type-checks it offline).

import { useCallback, useEffect, useRef, useState } from "react";
import {
  cancelBatch as cancelWholeBatch,
  cancelJob as cancel,
  requestBatch as submitBatch,
  requestStemSeparation as request,
  watchBatch,
  watchJob,
  type Batch,
  type BatchSongInput,
  type ClientOptions,
  type Job,
  type StemSeparationOptions,
  type StemSeparationPayload,
} from "./client.js";

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

export function useStemSeparation(options: ClientOptions = {}): UseStemSeparation {
  const [jobs, setJobs] = useState<Record<string, Job>>({});
  const watchers = useRef<Map<string, () => void>>(new Map());

  useEffect(() => () => {
    for (const stop of watchers.current.values()) stop();
    watchers.current.clear();
  }, []);

  const pollJobStatus = useCallback((id: string) => {
    if (watchers.current.has(id)) return;
    const stop = watchJob(id, (job) => setJobs((all) => ({ ...all, [id]: job })), {
      ...options,
      onError: () => setJobs((all) => {
        const { [id]: _gone, ...rest } = all;
        return rest;
      }),
    });
    watchers.current.set(id, stop);
  }, [options.baseUrl]);

  const requestStemSeparation = useCallback(async (payload: StemSeparationPayload) => {
    const accepted = await request(payload, options);
    pollJobStatus(accepted.job_id);
    return accepted.job_id;
  }, [pollJobStatus]);

  const cancelJob = useCallback(async (id: string) => {
    watchers.current.get(id)?.();
    watchers.current.delete(id);
    await cancel(id, options);
    setJobs((all) => {
      const { [id]: _gone, ...rest } = all;
      return rest;
    });
  }, [options.baseUrl]);

  const [batches, setBatches] = useState<Record<string, Batch>>({});
  const batchWatchers = useRef<Map<string, () => void>>(new Map());

  useEffect(() => () => {
    for (const stop of batchWatchers.current.values()) stop();
    batchWatchers.current.clear();
  }, []);

  const pollBatchStatus = useCallback((id: string) => {
    if (batchWatchers.current.has(id)) return;
    const stop = watchBatch(id, (batch) => setBatches((all) => ({ ...all, [id]: batch })), {
      ...options,
      onError: () => setBatches((all) => {
        const { [id]: _gone, ...rest } = all;
        return rest;
      }),
    });
    batchWatchers.current.set(id, stop);
  }, [options.baseUrl]);

  const requestBatch = useCallback(async (songs: BatchSongInput[], payload: StemSeparationOptions = {}) => {
    const batch = await submitBatch(songs, payload, options);
    setBatches((all) => ({ ...all, [batch.batch_id]: batch }));
    pollBatchStatus(batch.batch_id);
    return batch.batch_id;
  }, [pollBatchStatus]);

  const cancelBatch = useCallback(async (id: string) => {
    batchWatchers.current.get(id)?.();
    batchWatchers.current.delete(id);
    const batch = await cancelWholeBatch(id, options);
    setBatches((all) => ({ ...all, [id]: batch }));
  }, [options.baseUrl]);

  return { jobs, requestStemSeparation, pollJobStatus, cancelJob, batches, requestBatch, pollBatchStatus, cancelBatch };
}
