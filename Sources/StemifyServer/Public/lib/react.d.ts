import { type ClientOptions, type Job, type StemSeparationPayload } from "./client.js";
export interface UseStemSeparation {
    /** Every job this hook started or watched, by id, as last seen. */
    jobs: Record<string, Job>;
    /** Submits a separation and starts following it; resolves with the job id. */
    requestStemSeparation: (payload: StemSeparationPayload) => Promise<string>;
    /** Follows a job (for example one from an earlier visit) until it ends. */
    pollJobStatus: (id: string) => void;
    cancelJob: (id: string) => Promise<void>;
}
export declare function useStemSeparation(options?: ClientOptions): UseStemSeparation;
