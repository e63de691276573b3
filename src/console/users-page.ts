import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuditAction } from '../audit/audit-log.js';
import type { Actor, AdminSessionRecord } from '../services/admin-service.js';
import type { DeviceView } from '../services/device-service.js';
import type { UserRecord } from '../store/store.js';
import { noticeFor, sendPage, type AdminRequest, type ConsoleContext } from './context.js';
import { html, time, type Html } from './html.js';
import { actionForm, confirmPage, csrfField, page, type Notice, type Viewer } from './layout.js';

// Shown at once on the users page; a search narrows the list (the rest are a search away).
const LIST_MAX = 500;

const EMAIL_FIELD = { type: 'string', minLength: 1, maxLength: 254 } as const;
const CSRF_FIELD = { type: 'string', maxLength: 100 } as const;
const CONFIRM_FIELD = { type: 'string', maxLength: 3 } as const;

const bodySchema = (required: string[], more: Record<string, unknown> = {}) =>
  ({ schema: { body: { type: 'object', required: ['_csrf', ...required], properties: { _csrf: CSRF_FIELD, confirm: CONFIRM_FIELD, email: EMAIL_FIELD, ...more } } } }) as const;

type Form = Record<string, string>;

/** Users: search, add, and one operator's page with every change the AdminService offers. */
export function registerUsersPage(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps } = ctx;

  const usersPage = async (a: AdminRequest, query: string, notice?: Notice, actor: Actor = a.actor): Promise<Html> => {
    const all = await deps.admin.listUsers(actor);
    const q = query.trim().toLowerCase();
    const found = q ? all.filter((u) => u.email.includes(q) || u.role === q || u.phone.includes(q)) : all;
    const rows = found.slice(0, LIST_MAX).map(
      (u) => html`<tr><td><a href="/user?email=${encodeURIComponent(u.email)}">${u.email}</a></td><td>${u.role}</td><td>${u.disabled ? 'disabled' : 'enabled'}</td><td>${time(u.createdAt)}</td></tr>`,
    );
    return page(
      'users',
      'Users',
      a.viewer,
      html`<form method="get" action="/users" class="filters" role="search">
<label for="q">Search</label> <input id="q" name="q" type="search" value="${query}" maxlength="254"> <button type="submit">Search</button>
</form>
<p>${found.length} of ${all.length} operator(s)${found.length > LIST_MAX ? html`; the first ${LIST_MAX} shown` : ''}.</p>
<table><thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">State</th><th scope="col">Created</th></tr></thead><tbody>${rows}</tbody></table>
<section aria-labelledby="add"><h2 id="add">Add an operator</h2>
<form method="post" action="/users/add" class="grid">
${csrfField(a.viewer.csrf)}
<label for="add-email">Email</label><input id="add-email" name="email" type="email" required maxlength="254" autocomplete="off">
<label for="add-phone">Phone</label><input id="add-phone" name="phone" type="tel" required maxlength="40" autocomplete="off">
<label for="add-role">Role</label>${roleSelect('add-role', deps.roles(), 'user')}
<label for="add-password">Password</label><input id="add-password" name="password" type="password" required maxlength="1024" autocomplete="new-password">
<button type="submit">Add</button>
</form></section>`,
      notice,
    );
  };

  const userPage = async (a: AdminRequest, email: string, notice?: Notice): Promise<Html> => {
    let user: UserRecord;
    let devices: DeviceView[];
    let sessions: AdminSessionRecord[];
    try {
      user = (await deps.admin.showUser(a.actor, email)).user;
      // One page view, audited once (as admin.user.show): the reads that fill it are not.
      const quiet = { ...a.actor, auditReads: false };
      devices = await deps.devices.listFor(quiet, user.email);
      sessions = await deps.admin.listSessions(quiet, user.email);
    } catch (err) {
      return usersPage(a, '', noticeFor(err), { ...a.actor, auditReads: false });
    }
    return page('users', user.email, a.viewer, userDetail(a.viewer, user, devices, sessions, deps.roles()), notice);
  };

  app.get<{ Querystring: { q?: string } }>(
    '/users',
    { schema: { querystring: { type: 'object', properties: { q: { type: 'string', maxLength: 254 } } } } },
    async (req, reply) => {
      const a = await ctx.admin(req, reply, 'admin.user.list');
      if (!a) return reply;
      return sendPage(reply, await usersPage(a, req.query.q ?? ''));
    },
  );

  app.get<{ Querystring: { email: string } }>(
    '/user',
    { schema: { querystring: { type: 'object', required: ['email'], properties: { email: EMAIL_FIELD } } } },
    async (req, reply) => {
      const a = await ctx.admin(req, reply, 'admin.user.show');
      if (!a) return reply;
      return sendPage(reply, await userPage(a, req.query.email));
    },
  );

  app.post<{ Body: Form }>(
    '/users/add',
    bodySchema(['email', 'phone', 'role', 'password'], { phone: { type: 'string', maxLength: 40 }, role: { type: 'string', maxLength: 64 }, password: { type: 'string', maxLength: 1024 } }),
    async (req, reply) => {
      const a = await ctx.change(req, reply, 'admin.user.add');
      if (!a) return reply;
      const { email, phone, role, password } = req.body as Required<Form>;
      let notice: Notice;
      try {
        const user = await deps.admin.addUser(a.actor, { email: email!, phone: phone!, role: role!, password: password! });
        notice = { kind: 'ok', text: `Added ${user.email} (${user.role}).` };
      } catch (err) {
        notice = noticeFor(err);
      }
      return sendPage(reply, await usersPage(a, '', notice, { ...a.actor, auditReads: false }));
    },
  );

  /**
   * One change to one operator: refused without the session's CSRF token; asked again (a page
   * with the same form, confirmed) when destructive and not yet confirmed; then done through the
   * AdminService, and the operator's page shown with the outcome.
   */
  const change = (
    route: string,
    action: AuditAction,
    opts: { confirm?: (f: Form) => string; more?: Record<string, unknown>; required?: string[] },
    run: (actor: Actor, f: Form) => Promise<string>,
  ): void => {
    app.post<{ Body: Form }>(route, bodySchema(['email', ...(opts.required ?? [])], opts.more), async (req: FastifyRequest<{ Body: Form }>, reply: FastifyReply) => {
      const a = await ctx.change(req, reply, action);
      if (!a) return reply;
      const f = req.body;
      if (opts.confirm && f.confirm !== 'yes') {
        return sendPage(reply, confirmPage('users', a.viewer, opts.confirm(f), route, f, `/user?email=${encodeURIComponent(f.email!)}`));
      }
      let notice: Notice;
      try {
        notice = { kind: 'ok', text: await run(a.actor, f) };
      } catch (err) {
        notice = noticeFor(err);
      }
      // A deleted operator has no page left: the list, with the outcome.
      if (action === 'admin.user.delete' && notice.kind === 'ok') return sendPage(reply, await usersPage(a, '', notice, { ...a.actor, auditReads: false }));
      return sendPage(reply, await userPage({ ...a, actor: { ...a.actor, auditReads: false } }, f.email!, notice));
    });
  };

  change('/user/disable', 'admin.user.disable', { confirm: (f) => `Disable ${f.email}? Their sessions end now.` }, async (actor, f) => {
    const r = await deps.admin.disableUser(actor, f.email!);
    return `Disabled ${r.user.email}; ${r.sessionsEnded} session(s) ended.`;
  });
  change('/user/enable', 'admin.user.enable', {}, async (actor, f) => `Enabled ${(await deps.admin.enableUser(actor, f.email!)).email}.`);
  change(
    '/user/role',
    'admin.user.set_role',
    { required: ['role'], more: { role: { type: 'string', maxLength: 64 } }, confirm: (f) => `Change the role of ${f.email} to ${f.role}?` },
    async (actor, f) => {
      const u = await deps.admin.setRole(actor, f.email!, f.role!);
      return `${u.email} now has role ${u.role}.`;
    },
  );
  change(
    '/user/reset-password',
    'admin.user.reset_password',
    // Confirmed by the form's own checkbox: a confirmation page would have to carry the password.
    { required: ['password', 'confirm'], more: { password: { type: 'string', maxLength: 1024 } } },
    async (actor, f) => {
      const r = await deps.admin.resetPassword(actor, f.email!, f.password!);
      return `New password set for ${r.user.email}; ${r.sessionsEnded} session(s) ended.`;
    },
  );
  change('/user/delete', 'admin.user.delete', { confirm: (f) => `Delete ${f.email} for good, with their sessions?` }, async (actor, f) => {
    const u = await deps.admin.deleteUser(actor, f.email!);
    return `Deleted ${u.email}.`;
  });
}

function roleSelect(id: string, roles: readonly string[], selected: string): Html {
  return html`<select id="${id}" name="role">${roles.map((r) => html`<option${r === selected ? html` selected` : ''}>${r}</option>`)}</select>`;
}

function userDetail(viewer: Viewer, user: UserRecord, devices: readonly DeviceView[], sessions: readonly AdminSessionRecord[], roles: readonly string[]): Html {
  const e = user.email;
  return html`<dl class="facts"><dt>Phone</dt><dd>${user.phone}</dd><dt>Role</dt><dd>${user.role}</dd><dt>State</dt><dd>${user.disabled ? 'disabled' : 'enabled'}</dd><dt>Created</dt><dd>${time(user.createdAt)}</dd></dl>
<section aria-labelledby="actions"><h2 id="actions">Actions</h2>
<div class="actions">
${user.disabled ? actionForm(viewer, '/user/enable', 'Enable', { email: e }) : actionForm(viewer, '/user/disable', 'Disable', { email: e }, `Disable ${e}? Their sessions end now.`)}
${actionForm(viewer, '/sessions/revoke-user', 'End all sessions', { email: e }, `End every session of ${e}?`)}
${actionForm(viewer, '/user/delete', 'Delete', { email: e }, `Delete ${e} for good, with their sessions?`)}
</div>
<form method="post" action="/user/role" class="inline" data-confirm="Change the role of ${e}?">
${csrfField(viewer.csrf)}<input type="hidden" name="email" value="${e}">
<label for="role">Role</label> ${roleSelect('role', roles, user.role)} <button type="submit">Set role</button>
</form>
<form method="post" action="/user/reset-password" class="inline">
${csrfField(viewer.csrf)}<input type="hidden" name="email" value="${e}">
<label for="new-password">New password</label> <input id="new-password" name="password" type="password" required maxlength="1024" autocomplete="new-password">
<input id="reset-confirm" name="confirm" type="checkbox" value="yes" required> <label for="reset-confirm">I understand their sessions end</label>
<button type="submit" class="danger">Reset password</button>
</form>
</section>
<section aria-labelledby="devices"><h2 id="devices">Devices</h2>
${deviceTable(devices)}
</section>
<section aria-labelledby="user-sessions"><h2 id="user-sessions">Active sessions</h2>
${sessionTable(viewer, sessions)}
</section>`;
}

/**
 * The operator's known devices (DeviceService.listFor, as admin.user.devices and `hellwall user
 * device list` show them): registered ones, and the ones they logged in from.
 */
function deviceTable(devices: readonly DeviceView[]): Html {
  if (devices.length === 0) return html`<p>No known device.</p>`;
  return html`<table><thead><tr><th scope="col">MAC</th><th scope="col">Name</th><th scope="col">Registered</th><th scope="col">First seen</th><th scope="col">Last seen</th></tr></thead>
<tbody>${devices.map(
    (d) =>
      html`<tr><td>${d.mac}</td><td>${d.name ?? '-'}</td><td>${d.registered ? html`yes (${d.registeredBy ?? '?'}, ${time(d.registeredAt ?? null)})` : 'no'}</td><td>${time(d.firstSeenAt ?? null)}</td><td>${time(d.lastSeenAt ?? null)}</td></tr>`,
  )}</tbody></table>`;
}

/** Whether a session's MAC is registered; `-` while it is not a known device yet. */
function registeredText(flag: boolean | undefined): string {
  return flag === undefined ? '-' : flag ? 'yes' : 'no';
}

/** Sessions with a button each to end one; shared with the sessions page. */
export function sessionTable(viewer: Viewer, sessions: readonly AdminSessionRecord[]): Html {
  if (sessions.length === 0) return html`<p>No active session.</p>`;
  return html`<table><thead><tr><th scope="col">Id</th><th scope="col">Operator</th><th scope="col">Address</th><th scope="col">MAC</th><th scope="col">Device</th><th scope="col">Device name</th><th scope="col">Registered</th><th scope="col">Logged in</th><th scope="col">Last seen</th><th scope="col"><span class="visually-hidden">Action</span></th></tr></thead>
<tbody>${sessions.map(
    (s) => html`<tr><td>${s.id}</td><td><a href="/user?email=${encodeURIComponent(s.userEmail)}">${s.userEmail}</a></td><td>${s.ip}</td><td>${s.mac}</td><td>${s.device ?? '-'}</td><td>${s.deviceName ?? '-'}</td><td>${registeredText(s.deviceRegistered)}</td><td>${time(s.createdAt)}</td><td>${time(s.lastSeenAt)}</td>
<td>${actionForm(viewer, '/sessions/revoke', 'End', { id: s.id }, `End session ${s.id} of ${s.userEmail}?`)}</td></tr>`,
  )}</tbody></table>`;
}
