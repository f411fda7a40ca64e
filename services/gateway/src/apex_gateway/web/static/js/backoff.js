// When the page reconnects: exponential backoff with full jitter. Each wait is drawn
// uniformly from zero to a ceiling that doubles per failed attempt (1 s, 2 s, 4 s ...
// up to 15 s). After a gateway drains (close 1012) its clients spread their reconnects
// over the whole window instead of arriving at the other gateways together.

export const RECONNECT_BASE_MS = 1000;
export const RECONNECT_CAP_MS = 15000;

// attempt: 0 for the first reconnect after a drop; random: a source in [0, 1).
export function reconnectDelay(attempt, random = Math.random) {
  const ceiling = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}
