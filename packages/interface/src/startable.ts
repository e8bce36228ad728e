/** The lifecycle every long-lived component shares (the shape of libp2p's Startable). */
export interface Startable {
  start (): Promise<void>
  stop (): Promise<void>
}

export interface AbortOptions { signal?: AbortSignal }
