// Known devices (issue 13 item 4): the MACs an operator logs in from, with first and last use and
// a name, and the address groups they log in from. A login from a MAC or an address group not seen
// before for the operator mails them ("new sign-in …") after the answer. Administrators may require
// that logins come only from registered devices (`devices.requireRegistered`, or per role
// `devices.requireRegisteredRoles`): registration is by an administrator (admin.device.register,
// `hellwall user device add`) or by the operator's own device recovery (recovery.device, which
// calls `registerIn` inside its transaction).
//
// A MAC is what the client asserts [P-3.3]: the policy keeps a password-and-passcode holder off
// other devices only as far as the MAC is not known to them (SECURITY.md says so).
//
// Nothing here runs on the token.check path: a device's last use is written at login only.

import type { AuditDetail } from '../store/store.js';
import type { AuditAction, AuditSink } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Clock, Logger } from '../deps.js';
import { ServiceError } from '../errors.js';
import type { MailQueue } from '../mail/mailer.js';
import { addressGroup } from '../net/address-group.js';
import { normalizeEmail, normalizeMac } from '../primitives/normalize.js';
import type { DeviceRecord, SessionRecord, Store, StoreOps, UserRecord } from '../store/store.js';
import type { Actor } from './admin-service.js';
import type { Alerts } from './alerts.js';
import type { SessionCache } from './session-cache.js';
import type { Caller } from './session-service.js';
import type { TokenService } from './token-service.js';
import { requireUser, UserInputError } from './users.js';

/** A device as the operator and administrators see it. Absent values are left out. */
export interface DeviceView {
  mac: string;
  name?: string;
  registered: boolean;
  registeredAt?: number;
  registeredBy?: string;
  firstSeenAt?: number;
  lastSeenAt?: number;
  lastIp?: string;
}

export function deviceView(d: DeviceRecord): DeviceView {
  return {
    mac: d.mac,
    ...(d.name !== null && { name: d.name }),
    registered: d.registeredAt !== null,
    ...(d.registeredAt !== null && { registeredAt: d.registeredAt }),
    ...(d.registeredBy !== null && { registeredBy: d.registeredBy }),
    ...(d.firstSeenAt !== null && { firstSeenAt: d.firstSeenAt }),
    ...(d.lastSeenAt !== null && { lastSeenAt: d.lastSeenAt }),
    ...(d.lastIp !== null && { lastIp: d.lastIp }),
  };
}

/**
 * What a session shows of its MAC among its operator's known devices [P-4.40]: the device's name,
 * if it has one, and whether it is registered; neither when the MAC is not a known device yet (the
 * login's device is recorded just after its answer). session.list and the admin views alike.
 */
export interface SessionDevice {
  deviceName?: string;
  deviceRegistered?: boolean;
}

/**
 * Sessions with their known-device fields (SessionDevice), for session.list and the admin session
 * views: one device list per operator among them, matched by MAC, so both join the same way.
 */
export async function withKnownDevices<S extends Pick<SessionRecord, 'userId' | 'mac'>>(store: Pick<StoreOps, 'listDevices'>, sessions: readonly S[]): Promise<Array<S & SessionDevice>> {
  const byUser = new Map<number, Map<string, DeviceRecord>>();
  // One indexed query per operator listed, not per session: an operator's devices are few, and the
  // every-operator admin list has already read each of its sessions.
  for (const userId of new Set(sessions.map((s) => s.userId))) {
    byUser.set(userId, new Map((await store.listDevices(userId)).map((d) => [d.mac, d])));
  }
  return sessions.map((s) => {
    const d = byUser.get(s.userId)!.get(s.mac);
    return { ...s, ...(d?.name != null && { deviceName: d.name }), ...(d && { deviceRegistered: d.registeredAt !== null }) };
  });
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
// As the wire's `device` description: printable, no control characters or lone surrogates.
const NAME_RE = /^[^\u0000-\u001F\u007F-\u009F\uD800-\uDFFF]{1,128}$/;

/** A MAC as given on the command line or the wire, normalized; `invalid` when it is none. */
export function parseMac(mac: string): string {
  const m = normalizeMac(mac.trim());
  if (!MAC_RE.test(m)) throw new UserInputError(`not a MAC address: ${JSON.stringify(mac.slice(0, 40))} (six hex pairs, e.g. 00:1a:2b:3c:4d:5e)`);
  return m;
}

function parseName(name: string | null | undefined): string | null {
  if (name === undefined || name === null || name === '') return null;
  if (!NAME_RE.test(name)) throw new UserInputError('a device name is 1 to 128 printable characters');
  return name;
}

export interface DeviceServiceDeps {
  readonly config: Pick<Config, 'devices'> & { readonly limits: Pick<Config['limits'], 'ipv6Prefix'> };
  readonly store: Store;
  readonly sessions: Pick<SessionCache, 'forget'>;
  readonly clock: Clock;
  readonly audit: AuditSink;
  readonly alerts: Pick<Alerts, 'send'>;
  /** Runs work after the current answer (MailQueue.later): the login's device bookkeeping. */
  readonly mail: Pick<MailQueue, 'later'>;
  readonly tokens: Pick<TokenService, 'authenticate'>;
}

export class DeviceService {
  readonly #d: DeviceServiceDeps;
  readonly #roles: ReadonlySet<string>;

  constructor(deps: DeviceServiceDeps) {
    this.#d = deps;
    this.#roles = new Set(
      deps.config.devices.requireRegisteredRoles
        .split(',')
        .map((r) => r.trim())
        .filter(Boolean),
    );
  }

  /** Whether logins of an operator with this role must come from a registered device. */
  requiresRegistered(role: string): boolean {
    return this.#d.config.devices.requireRegistered || this.#roles.has(role);
  }

  /**
   * Inside the login transaction, with the other factors: true when the policy wants a registered
   * device and `mac` is not one of the operator's. The caller fails the login like any wrong factor
   * (reason `unregistered-device` in the audit trail, never on the wire).
   */
  async refuses(tx: StoreOps, user: Pick<UserRecord, 'id' | 'role'>, mac: string): Promise<boolean> {
    if (!this.requiresRegistered(user.role)) return false;
    const device = await tx.getDevice(user.id, normalizeMac(mac));
    return !device || device.registeredAt === null;
  }

  /**
   * A completed login: after the answer, records the device and the address group, and mails the
   * owner when either is new to them. Never delays or fails the login: a store failure here is
   * logged, and the next login from the device records it.
   */
  loginSucceeded(login: { user: Pick<UserRecord, 'id' | 'email'>; mac: string; ip: string; device: string | null; sessionId: number; at: number }, log: Logger): void {
    this.#d.mail.later(async () => {
      const mac = normalizeMac(login.mac);
      try {
        const novelty = await this.#d.store.recordDeviceLogin({
          userId: login.user.id,
          mac,
          ip: login.ip,
          addressGroup: addressGroup(login.ip, this.#d.config.limits.ipv6Prefix),
          name: login.device,
          at: login.at,
        });
        if (!novelty.newDevice && !novelty.newAddress) return;
        log.info({ event: 'device.new', userId: login.user.id, sessionId: login.sessionId, mac, ...novelty }, 'login from a new device or address');
        this.#d.alerts.send('new-device', login.user, {
          at: login.at,
          mac,
          ip: login.ip,
          device: login.device,
          sessionId: login.sessionId,
          newDevice: novelty.newDevice,
          newAddress: novelty.newAddress,
        });
      } catch (err) {
        log.warn({ event: 'device.record', userId: login.user.id, err: (err as Error).message }, 'could not record the login\'s device; the next login retries');
      }
    });
  }

  /** device.list: the caller's operator's devices. */
  async list(caller: Caller, log: Logger): Promise<DeviceView[]> {
    const s = await this.#d.tokens.authenticate({ ...caller, command: 'device.list' }, log);
    return (await this.#d.store.listDevices(s.userId)).map(deviceView);
  }

  /** device.rename: the operator names (or, with null, unnames) one of their devices. */
  async rename(caller: Caller, mac: string, name: string | null, log: Logger): Promise<DeviceView> {
    const s = await this.#d.tokens.authenticate({ ...caller, command: 'device.rename' }, log);
    const target = parseMac(mac);
    const who = { userId: s.userId, email: s.userEmail, sessionId: s.id, ip: caller.seenIp, mac: s.mac };
    const renamed = await this.#d.store.transaction(async (tx) => {
      if (!(await tx.renameDevice(s.userId, target, parseName(name)))) return undefined;
      await this.#d.audit.recordIn(tx, { action: 'device.rename', outcome: 'success', ...who, detail: { device: target, name } });
      return tx.getDevice(s.userId, target);
    });
    if (!renamed) {
      this.#d.audit.record({ action: 'device.rename', outcome: 'failure', ...who, detail: { device: target, reason: 'no-such-device' } });
      throw new ServiceError('not-found', 'no such device');
    }
    return deviceView(renamed);
  }

  /** admin.user.devices / `hellwall user device list`: an operator's devices. */
  async listFor(actor: Actor, email: string): Promise<DeviceView[]> {
    const user = await this.#auditedRefusal(actor, 'admin.user.devices', email, {}, () => requireUser(this.#d.store, email));
    const devices = await this.#d.store.listDevices(user.id);
    if (actor.auditReads) this.#d.audit.record(this.#event(actor, 'admin.user.devices', 'success', user, { count: devices.length }));
    return devices.map(deviceView);
  }

  /** admin.device.register / `hellwall user device add`: registers a MAC for the operator. */
  async register(actor: Actor, email: string, mac: string, name?: string | null): Promise<DeviceView> {
    return this.#auditedRefusal(actor, 'admin.device.register', email, { device: mac.slice(0, 40) }, async () => {
      const device = parseMac(mac);
      const given = parseName(name);
      return this.#d.store.transaction(async (tx) => {
        const user = await requireUser(tx, email);
        const row = await this.registerIn(tx, user.id, device, given, actor.name);
        await this.#d.audit.recordIn(tx, this.#event(actor, 'admin.device.register', 'success', user, { device, name: given }));
        return deviceView(row);
      });
    });
  }

  /**
   * Registers `mac` for the user inside the caller's transaction (admin registration, and the
   * TOTP engineer's recovery.device with `by` = `recovery`). The caller audits.
   */
  registerIn(tx: StoreOps, userId: number, mac: string, name: string | null, by: string): Promise<DeviceRecord> {
    return tx.registerDevice(userId, normalizeMac(mac), name, this.#d.clock(), by);
  }

  /**
   * admin.device.remove / `hellwall user device remove`: forgets the device and ends the
   * operator's sessions on it (a device no longer trusted must not stay logged in). not-found
   * when the operator has no such device.
   */
  async remove(actor: Actor, email: string, mac: string): Promise<{ sessionsEnded: number }> {
    const now = this.#d.clock();
    const { ended } = await this.#auditedRefusal(actor, 'admin.device.remove', email, { device: mac.slice(0, 40) }, async () => {
      const device = parseMac(mac);
      return this.#d.store.transaction(async (tx) => {
        const user = await requireUser(tx, email);
        if (!(await tx.deleteDevice(user.id, device))) throw new UserInputError(`${user.email} has no device ${device}`, 'not-found');
        const ended: number[] = [];
        for (const s of await tx.listOpenSessions(user.id)) {
          if (s.mac === device && (await tx.revokeSession(s.id, now, 'device-removed'))) ended.push(s.id);
        }
        await this.#d.audit.recordIn(tx, this.#event(actor, 'admin.device.remove', 'success', user, { device, sessionsEnded: ended.length }));
        return { ended };
      });
    });
    for (const id of ended) this.#d.sessions.forget(id);
    return { sessionsEnded: ended.length };
  }

  /** Runs `fn`; a refusal (unknown user, bad input) is audited as a failure after the rollback. */
  async #auditedRefusal<T>(actor: Actor, action: AuditAction, email: string, detail: AuditDetail, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof UserInputError) {
        this.#d.audit.record(this.#event(actor, action, 'failure', { email: normalizeEmail(email) }, { ...detail, reason: err.kind, message: err.message }));
      }
      throw err;
    }
  }

  #event(actor: Actor, action: AuditAction, outcome: 'success' | 'failure', user: { id?: number; email: string }, detail: AuditDetail) {
    return {
      action,
      outcome,
      actor: actor.name,
      userId: user.id ?? null,
      email: user.email,
      ip: actor.ip ?? null,
      mac: actor.mac ?? null,
      sessionId: actor.sessionId ?? null,
      detail,
    };
  }
}
