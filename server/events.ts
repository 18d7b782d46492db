/**
 * In-process event hub: the baker, the SSH endpoint, boot routes and admin
 * routes publish; the SSE route (/v1/events) streams to the web UI.
 */
import { EventEmitter } from 'node:events';

/** push/client/ref: something changed (reload it); progress: how far a long admin action is (nothing changed yet). */
export type ServerEventType = 'push' | 'client' | 'ref' | 'progress';

export interface ServerEvent {
  type: ServerEventType;
  data: Record<string, unknown>;
}

export class EventHub {
  private readonly ee = new EventEmitter();
  private seq = 0;
  constructor() {
    // Every open web UI tab is one listener.
    this.ee.setMaxListeners(0);
  }
  emit(type: ServerEventType, data: Record<string, unknown>): void {
    this.seq += 1;
    this.ee.emit('event', { type, data: { ...data, seq: this.seq, time: Date.now() } } satisfies ServerEvent);
  }
  subscribe(fn: (e: ServerEvent) => void): () => void {
    this.ee.on('event', fn);
    return () => this.ee.off('event', fn);
  }
}

/** One server-sent-events frame. */
export function sseFrame(e: ServerEvent): string {
  return `event: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`;
}
