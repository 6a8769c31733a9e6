// A React hook over the client, with the names of the mock service it replaces.
// React is a peer: this file only needs its types (a small declaration in react-shim.d.ts
// type-checks it offline).
import { useCallback, useEffect, useRef, useState } from "react";
import { cancelBatch as cancelWholeBatch, cancelJob as cancel, requestBatch as submitBatch, requestStemSeparation as request, watchBatch, watchJob, } from "./client.js";
export function useStemSeparation(options = {}) {
    const [jobs, setJobs] = useState({});
    const watchers = useRef(new Map());
    useEffect(() => () => {
        for (const stop of watchers.current.values())
            stop();
        watchers.current.clear();
    }, []);
    const pollJobStatus = useCallback((id) => {
        if (watchers.current.has(id))
            return;
        const stop = watchJob(id, (job) => setJobs((all) => ({ ...all, [id]: job })), {
            ...options,
            onError: () => setJobs((all) => {
                const { [id]: _gone, ...rest } = all;
                return rest;
            }),
        });
        watchers.current.set(id, stop);
    }, [options.baseUrl]);
    const requestStemSeparation = useCallback(async (payload) => {
        const accepted = await request(payload, options);
        pollJobStatus(accepted.job_id);
        return accepted.job_id;
    }, [pollJobStatus]);
    const cancelJob = useCallback(async (id) => {
        watchers.current.get(id)?.();
        watchers.current.delete(id);
        await cancel(id, options);
        setJobs((all) => {
            const { [id]: _gone, ...rest } = all;
            return rest;
        });
    }, [options.baseUrl]);
    const [batches, setBatches] = useState({});
    const batchWatchers = useRef(new Map());
    useEffect(() => () => {
        for (const stop of batchWatchers.current.values())
            stop();
        batchWatchers.current.clear();
    }, []);
    const pollBatchStatus = useCallback((id) => {
        if (batchWatchers.current.has(id))
            return;
        const stop = watchBatch(id, (batch) => setBatches((all) => ({ ...all, [id]: batch })), {
            ...options,
            onError: () => setBatches((all) => {
                const { [id]: _gone, ...rest } = all;
                return rest;
            }),
        });
        batchWatchers.current.set(id, stop);
    }, [options.baseUrl]);
    const requestBatch = useCallback(async (songs, payload = {}) => {
        const batch = await submitBatch(songs, payload, options);
        setBatches((all) => ({ ...all, [batch.batch_id]: batch }));
        pollBatchStatus(batch.batch_id);
        return batch.batch_id;
    }, [pollBatchStatus]);
    const cancelBatch = useCallback(async (id) => {
        batchWatchers.current.get(id)?.();
        batchWatchers.current.delete(id);
        const batch = await cancelWholeBatch(id, options);
        setBatches((all) => ({ ...all, [id]: batch }));
    }, [options.baseUrl]);
    return { jobs, requestStemSeparation, pollJobStatus, cancelJob, batches, requestBatch, pollBatchStatus, cancelBatch };
}
