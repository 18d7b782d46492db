/** Small checks for JSON request bodies and query strings: a clear E_BAD_ARGUMENT instead of a 500. */
import { StrataError } from '../store/errors.ts';

export type Json = Record<string, unknown>;

export function asObject(body: unknown, what: string): Json {
  if (body === undefined || body === null || body === '') return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new StrataError('E_BAD_ARGUMENT', `${what}: the body must be a JSON object`);
  return body as Json;
}

export function reqString(o: Json, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0)
    throw new StrataError('E_BAD_ARGUMENT', `${what}: "${key}" (a non-empty string) is required`, { field: key });
  return v;
}

export function optString(o: Json, key: string, what: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new StrataError('E_BAD_ARGUMENT', `${what}: "${key}" must be a string`, { field: key });
  return v;
}

export function optBool(o: Json, key: string, what: string): boolean | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (v === true || v === 'true' || v === '1') return true;
  if (v === false || v === 'false' || v === '0') return false;
  throw new StrataError('E_BAD_ARGUMENT', `${what}: "${key}" must be true or false`, { field: key });
}

export function optLimit(o: Json, key = 'limit'): number | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 100000)
    throw new StrataError('E_BAD_ARGUMENT', `"${key}" must be an integer from 1 to 100000`, { field: key });
  return n;
}
