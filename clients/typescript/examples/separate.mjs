// Separates one song with a Stemify server and prints its stems' addresses.
//
//   npm install ./stemify-client-0.1.0.tgz      (the package `npm pack` makes)
//   STEMIFY_URL=http://localhost:8080 node separate.mjs song.mp3 [model]
//
// Runs as written on Node 20 and later: `fetch`, `FormData` and `Blob` are built in; Node has no
// `EventSource`, so `watchJob` polls.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { newOwnerToken, requestStemSeparation, watchJob } from "@stemify/client";

const [path, model = "htdemucs"] = process.argv.slice(2);
if (!path) {
  console.error("usage: node separate.mjs SONG [MODEL]");
  process.exit(2);
}
// Outside a page there is no origin to default to: the server's address is absolute.
// Who you are: an API key where the server requires one, else an owner token of your own.
const client = { baseUrl: process.env.STEMIFY_URL ?? "http://localhost:8080", token: process.env.STEMIFY_TOKEN ?? newOwnerToken() };

const file = new Blob([await readFile(path)]);
const { job_id } = await requestStemSeparation({ file, fileName: basename(path), model, outputFormat: "mp3" }, client);
// Only this token reads the job: keep it (STEMIFY_TOKEN) to come back to the job later.
console.log(`job ${job_id} queued`);

const job = await new Promise((resolve) => {
  watchJob(job_id, (update) => {
    const eta = update.eta_seconds == null ? "" : `, about ${Math.round(update.eta_seconds)} s left`;
    console.log(`${update.status} ${Math.round(update.progress * 100)} %${eta}`);
    if (["done", "failed", "cancelled"].includes(update.status)) resolve(update);
  }, { ...client, pollIntervalMs: 500 });
});
if (job.status !== "done") {
  console.error(`the job ${job.status}: ${job.error?.message ?? "no reason given"}`);
  process.exit(1);
}
for (const stem of job.stems) console.log(`${stem.name}: ${client.baseUrl}${stem.url}`);
