/** Exit codes of the `strata` command: taken from the error table only (the same table as strata-agent). */
export { exitCodeFor } from '../protocol/errors.ts';
