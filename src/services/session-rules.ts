import type { LiveBounds, SessionRecord } from '../store/store.js';

/**
 * The one definition of a live session [P-4.5]: one that can still answer `authorized` or be
 * renewed. Not revoked, owner enabled, and either its token is current or it is inside both
 * renewal limits (absolute, and idle since last seen). Every count and list of "active" sessions
 * (session.list, the session cap, stats, the gauge) goes through this or its bounds below.
 */
export function isActiveSession(s: SessionRecord, now: number, idleMs: number): boolean {
  if (s.revokedAt !== null || s.userDisabled) return false;
  if (now < s.expiresAt) return true;
  return now < s.absoluteExpiresAt && now < s.lastSeenAt + idleMs;
}

/** isActiveSession as bounds the store can count by (Store.countLiveSessions). */
export function liveBounds(now: number, idleMs: number): LiveBounds {
  return { currentAfter: now, renewableAfter: { absolute: now, lastSeen: now - idleMs } };
}
