/**
 * A self-contained nginx main configuration for tests and benches: pid,
 * logs and every temp path inside DIR, so it runs beside (not instead of)
 * any system nginx. BODY is what goes inside http { }.
 */
export function nginxMainConf(
  dir: string,
  body: string,
  opts: { workers?: number | 'auto'; daemonAndPid?: boolean; httpExtra?: string[] } = {},
): string {
  // As root, nginx workers would drop to "nobody", who cannot enter a 0700 temp dir.
  const lines = [
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    ...(opts.daemonAndPid === false ? [] : ['daemon off;', `pid ${dir}/nginx.pid;`]),
    `worker_processes ${opts.workers ?? 'auto'};`,
    `error_log ${dir}/error.log;`,
    'events { worker_connections 1024; }',
    'http {',
    ...(opts.httpExtra ?? []).map((l) => `  ${l}`),
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t === 'client_body' ? 'body' : t};`),
    body,
    '}',
  ];
  return `${lines.join('\n')}\n`;
}
