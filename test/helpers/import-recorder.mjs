// node --import ./test/helpers/import-recorder.mjs PROGRAM: appends the URL of
// every module PROGRAM imports to the file named by $STRATA_IMPORT_LOG (the
// start-up test checks that a command loads only what it uses).
import { register } from 'node:module';

register('./import-recorder-hooks.mjs', import.meta.url, { data: { log: process.env.STRATA_IMPORT_LOG } });
