/**
 * Runs a strata server in its own process for crash tests:
 *   node --import tsx test/helpers/server-child.ts DATA_DIR
 * Prints one JSON line {"http":PORT,"ssh":PORT} on stdout once listening.
 */
import { startServer } from '../../server/main.ts';

const dataDir = process.argv[2];
if (!dataDir) {
  process.stderr.write('usage: server-child.ts DATA_DIR\n');
  process.exit(2);
}
const srv = await startServer({ dataDir, http: '127.0.0.1:0', ssh: '127.0.0.1:0', log: (m) => process.stderr.write(`child: ${m}\n`) });
process.stdout.write(`${JSON.stringify({ http: srv.httpPort, ssh: srv.sshPort })}\n`);
