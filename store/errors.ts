/** The error hierarchy and its table of meanings live in protocol/errors.ts (every process shares them). */
export * from '../protocol/errors.ts';
