// A React hook over the client, with the names of the mock service it replaces.
// React is a peer: this file only needs its types (a small declaration in react-shim.d.ts
// type-checks it offline).
import { useCallback, useEffect, useRef, useState } from "react";
import { cancelJob as cancel, requestStemSeparation as request, watchJob, } from "./client.js";
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
    return { jobs, requestStemSeparation, pollJobStatus, cancelJob };
}
