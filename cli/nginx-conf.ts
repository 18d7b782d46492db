/**
 * `strata nginx-conf`: an nginx `server { }` block that serves `objects/`
 * itself and proxies everything else to strata (issue 3). Node copies every
 * byte twice and has no sendfile, so 50 clients pulling layers reach only
 * 0.65-0.74x nginx (bench/serve.ts); objects are immutable and named by their
 * digest, so nginx can send them straight from the store with the very
 * headers strata sends (server/object-routes.ts), while scripts, metadata,
 * auth and pushes stay in Node.
 *
 * Pure: text in, text out. The caller includes the result inside `http { }`.
 */
import { StrataError } from '../store/errors.ts';

export interface NginxConfOptions {
  /** Absolute path of the strata data directory (the one with objects/). */
  dataDir: string;
  /** HOST:PORT nginx listens on (what clients and iPXE scripts use). */
  listen: string;
  /** HOST:PORT of `strata serve --http`. */
  upstream: string;
}

/** HOST:PORT with a DNS name, IPv4 or [IPv6] host; returned as nginx wants it. */
function hostPort(s: string, what: string): string {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s.trim());
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new StrataError('E_BAD_ARGUMENT', `${what} must be HOST:PORT with a port from 1 to 65535 (e.g. 127.0.0.1:8080), not "${s}"`);
  }
  return `${m[1]}:${Number(m[2])}`;
}

/**
 * The data directory goes into a double-quoted nginx string: `$` would be
 * read as a variable and `"`/`\` would end or escape the string, so such
 * paths are refused rather than half-escaped.
 */
function dataPath(dir: string): string {
  if (!dir.startsWith('/')) throw new StrataError('E_BAD_ARGUMENT', `the data directory must be an absolute path for nginx, not "${dir}"`);
  if (/["\\$\x00-\x1f\x7f]/.test(dir)) {
    throw new StrataError(
      'E_BAD_ARGUMENT',
      `the data directory "${dir}" has a character nginx cannot take in a path ($, ", \\ or a control character); move or link it elsewhere`,
    );
  }
  return dir.replace(/\/+$/, '') || '/';
}

export function renderNginxConf(opts: NginxConfOptions): string {
  const listen = hostPort(opts.listen, '--listen');
  const upstream = hostPort(opts.upstream, '--upstream');
  const data = dataPath(opts.dataDir);
  const objects = `${data === '/' ? '' : data}/objects/sha256`;
  const badDigest = JSON.stringify({
    error: { code: 'E_BAD_DIGEST', message: 'not a sha256 digest; object URLs are /objects/sha256/<64 lowercase hex digits>' },
  });
  const missing = JSON.stringify({ error: { code: 'E_OBJECT_NOT_FOUND', message: 'no such object on this server' } });
  return `# strata in front of nginx: made by \`strata nginx-conf\`; include it inside http { }.
# Objects (immutable, named by their sha256) are sent by nginx from
# ${objects}; everything else goes to strata at ${upstream}.
server {
    listen ${listen};

    # Objects: the file a digest names, with the headers strata sends
    # (strong ETag "<hex>", cached forever). Named captures, not $1/$2: nothing
    # later in the request can overwrite them.
    location ~ "^/(?:v1/)?objects/sha256/(?<strata_d2>[0-9a-f]{2})(?<strata_d62>[0-9a-f]{62})$" {
        alias "${objects}/$strata_d2/$strata_d62";
        sendfile on;
        tcp_nopush on;
        types { }
        default_type application/octet-stream;
        # nginx's own ETag is mtime-size; strata's is the digest, which any
        # cache that saw strata before keeps valid. The added ETag is what
        # nginx's If-Range check compares (its range filter runs after
        # add_header), but If-None-Match is checked before add_header, so the
        # 304 is decided here: the digest, W/ or not, anywhere in the list, or *.
        # Only "return" inside these ifs: the safe use of if in a location.
        etag off;
        add_header ETag "\\"$strata_d2$strata_d62\\"";
        add_header Cache-Control "public, max-age=31536000, immutable";
        if (!-f "${objects}/$strata_d2/$strata_d62") { return 404; }
        set $strata_inm "$strata_d2$strata_d62 $http_if_none_match";
        if ($strata_inm ~ '^([0-9a-f]{64}) (?:\\s*\\*\\s*|(?:.*,)?\\s*(?:W/)?"\\1"\\s*(?:,.*)?)$') { return 304; }
        # One range at most, as strata: several ranges get the whole body.
        max_ranges 1;
        error_page 404 = @strata_object_missing;
    }
    location @strata_object_missing {
        default_type application/json;
        return 404 '${missing}';
    }

    # Anything else under objects/ is not a digest: answered here, never a
    # file (no ../, no upper case, no short names).
    location ~ "^/(?:v1/)?objects/" {
        default_type application/json;
        return 400 '${badDigest}';
    }

    # Server-sent events: each event must reach the browser as it happens.
    location = /v1/events {
        proxy_pass http://${upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_buffering off;
        proxy_cache off;
        proxy_read_timeout 1h;
    }

    # Boot scripts, manifests, the admin API and the web UI. Host is passed
    # as the client sent it (with its port): iPXE scripts name this front
    # address in their kernel/initrd URLs.
    location / {
        proxy_pass http://${upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        # GRUB sends Host without the port; strata needs it to write (http,HOST:PORT) paths.
        proxy_set_header X-Forwarded-Port $server_port;
        client_max_body_size 1m;   # strata's own body limit
        # A flatten answers when its layer is baked: minutes at the default zstd
        # level on a large base, past nginx's 60 s default.
        proxy_read_timeout 1h;
    }
}
`;
}
