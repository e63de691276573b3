import type { FastifyInstance } from 'fastify';
import type { Actor, AdminSessionRecord } from '../services/admin-service.js';
import { noticeFor, sendPage, type AdminRequest, type ConsoleContext } from './context.js';
import { html, type Html } from './html.js';
import { confirmPage, page, type Notice } from './layout.js';
import { sessionTable } from './users-page.js';

interface Filter {
  email?: string;
  ip?: string;
}

const FILTER_QUERY = {
  type: 'object',
  properties: { email: { type: 'string', maxLength: 254 }, ip: { type: 'string', maxLength: 64 } },
} as const;

/** Active sessions of everyone or of one operator, narrowed by address; end one, or all of an operator's. */
export function registerSessionsPage(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps } = ctx;

  const sessionsPage = async (a: AdminRequest, filter: Filter, notice?: Notice, actor: Actor = a.actor): Promise<Html> => {
    const email = filter.email?.trim() || undefined;
    const ip = filter.ip?.trim() ?? '';
    let listed: AdminSessionRecord[];
    try {
      listed = await deps.admin.listSessions(actor, email);
    } catch (err) {
      notice ??= noticeFor(err);
      listed = [];
    }
    // By address: a prefix, so `10.1.` finds a network.
    const shown = ip ? listed.filter((s) => s.ip.startsWith(ip)) : listed;
    return page(
      'sessions',
      'Sessions',
      a.viewer,
      html`<form method="get" action="/sessions" class="filters" role="search">
<label for="f-email">Operator</label> <input id="f-email" name="email" type="email" value="${email ?? ''}" maxlength="254">
<label for="f-ip">Address starts with</label> <input id="f-ip" name="ip" value="${ip}" maxlength="64">
<button type="submit">Filter</button>
</form>
<p>${shown.length} active session(s).</p>
${sessionTable(a.viewer, shown)}`,
      notice,
    );
  };

  app.get<{ Querystring: Filter }>('/sessions', { schema: { querystring: FILTER_QUERY } }, async (req, reply) => {
    const a = await ctx.admin(req, reply, 'admin.session.list');
    if (!a) return reply;
    return sendPage(reply, await sessionsPage(a, req.query));
  });

  app.post<{ Body: { id: string; confirm?: string } }>(
    '/sessions/revoke',
    { schema: { body: { type: 'object', required: ['id', '_csrf'], properties: { id: { type: 'string', pattern: '^[0-9]{1,15}$' }, _csrf: { type: 'string', maxLength: 100 }, confirm: { type: 'string', maxLength: 3 } } } } },
    async (req, reply) => {
      const a = await ctx.change(req, reply, 'admin.session.revoke');
      if (!a) return reply;
      if (req.body.confirm !== 'yes') return sendPage(reply, confirmPage('sessions', a.viewer, `End session ${req.body.id}?`, '/sessions/revoke', { id: req.body.id }, '/sessions'));
      let notice: Notice;
      try {
        const s = await deps.admin.revokeSession(a.actor, Number(req.body.id));
        notice = { kind: 'ok', text: `Ended session ${s.id} of ${s.userEmail}.` };
      } catch (err) {
        notice = noticeFor(err);
      }
      return sendPage(reply, await sessionsPage(a, {}, notice, { ...a.actor, auditReads: false }));
    },
  );

  app.post<{ Body: { email: string; confirm?: string } }>(
    '/sessions/revoke-user',
    { schema: { body: { type: 'object', required: ['email', '_csrf'], properties: { email: { type: 'string', minLength: 1, maxLength: 254 }, _csrf: { type: 'string', maxLength: 100 }, confirm: { type: 'string', maxLength: 3 } } } } },
    async (req, reply) => {
      const a = await ctx.change(req, reply, 'admin.session.revoke_user');
      if (!a) return reply;
      const { email } = req.body;
      if (req.body.confirm !== 'yes') return sendPage(reply, confirmPage('sessions', a.viewer, `End every session of ${email}?`, '/sessions/revoke-user', { email }, '/sessions'));
      let notice: Notice;
      try {
        const r = await deps.admin.revokeUserSessions(a.actor, email);
        notice = { kind: 'ok', text: `Ended ${r.ended} session(s) of ${r.user.email}.` };
      } catch (err) {
        notice = noticeFor(err);
      }
      return sendPage(reply, await sessionsPage(a, { email }, notice, { ...a.actor, auditReads: false }));
    },
  );
}
