/** Entry point of an HTTP worker process (forked by server/cluster.ts; not run by hand). */
import { runHttpWorker } from './cluster.ts';

await runHttpWorker();
