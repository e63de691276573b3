import type { FastifyInstance } from 'fastify';
import { listKeys, NODE_SEEN_MS } from '../keys/key-ring.js';
import { MIGRATIONS } from '../store/migrations.js';
import { POSTGRES_MIGRATIONS } from '../store/postgres-migrations.js';
import { StoreFailure } from '../errors.js';
import { noticeFor, sendPage, type AdminRequest, type ConsoleContext } from './context.js';
import { html, time, type Html } from './html.js';
import { actionForm, confirmPage, page, type Notice } from './layout.js';

/** Housekeeping now, schema migrations, the key ring's rotation state. */
export function registerMaintenancePage(app: FastifyInstance, ctx: ConsoleContext): void {
  const { deps } = ctx;

  const maintenancePage = async (a: AdminRequest, notice?: Notice, deleted?: Readonly<Record<string, number>>): Promise<Html> => {
    const now = deps.clock();
    const version = await deps.store.schemaVersion();
    const migrations = deps.store.backend === 'postgres' ? POSTGRES_MIGRATIONS : MIGRATIONS;
    const latest = migrations.at(-1)?.version ?? 0;
    const keys = listKeys(deps.config.dataDir);
    const current = keys.find((k) => k.status === 'current');
    const byKey = await deps.store.countSessionsByKey(now);
    const nodes = await deps.store.listNodes(now - NODE_SEEN_MS);
    const lagging = nodes.filter((n) => n.currentKeyId !== current?.id);
    const older = keys.filter((k) => k.status === 'verifying' && (byKey.get(k.id) ?? 0) > 0);
    const rotation =
      lagging.length > 0
        ? `Rotation in progress: ${lagging.length} node(s) still sign with an older key (send them SIGHUP).`
        : older.length > 0
          ? `Every node uses key ${current?.id}; ${older.map((k) => `${byKey.get(k.id)} session(s) on key ${k.id}`).join(', ')} move over as they renew. Retire an old key once it has none.`
          : `Key ${current?.id ?? '-'} is current everywhere; no session depends on an older key.`;
    return page(
      'maintenance',
      'Maintenance',
      a.viewer,
      html`<section aria-labelledby="cleanup"><h2 id="cleanup">Clean up now</h2>
<p>Deletes expired passcodes, dead sessions and their retired tokens, audit rows past retention and expired counters, as the housekeeper does every few minutes.</p>
${actionForm(a.viewer, '/maintenance/cleanup', 'Run cleanup now', {}, 'Delete every expired row now?')}
${deleted ? html`<table class="counts"><caption>Rows deleted</caption><tbody>${Object.entries(deleted).map(([k, n]) => html`<tr><th scope="row">${k}</th><td>${n}</td></tr>`)}</tbody></table>` : ''}
</section>
<section aria-labelledby="schema"><h2 id="schema">Schema migrations</h2>
<p>${deps.store.backend} database at schema version ${version}; this build knows up to ${latest}: ${version === latest ? 'up to date' : version < latest ? 'migrations pending (they run at the next start)' : 'the database is newer than this build'}.</p>
<table><thead><tr><th scope="col">Version</th><th scope="col">Migration</th><th scope="col">State</th></tr></thead>
<tbody>${migrations.map((m) => html`<tr><td>${m.version}</td><td>${m.name}</td><td>${m.version <= version ? 'applied' : 'pending'}</td></tr>`)}</tbody></table>
</section>
<section aria-labelledby="rotation"><h2 id="rotation">Key rotation</h2>
<p>${rotation}</p>
<table><thead><tr><th scope="col">Key</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Retired</th><th scope="col">Sessions</th></tr></thead>
<tbody>${keys.map((k) => html`<tr><td>${k.id}</td><td>${k.status}</td><td>${time(k.createdAt)}</td><td>${time(k.retiredAt)}</td><td>${byKey.get(k.id) ?? 0}</td></tr>`)}</tbody></table>
<table><caption>Nodes on this database</caption><thead><tr><th scope="col">Node</th><th scope="col">Signs with key</th><th scope="col">Last seen</th></tr></thead>
<tbody>${nodes.map((n) => html`<tr><td>${n.id}</td><td>${n.currentKeyId}</td><td>${time(n.seenAt)}</td></tr>`)}</tbody></table>
<p>Rotate with <code>hellwall key rotate</code> on the host, then SIGHUP every node; retire with <code>hellwall key retire ID</code>.</p>
</section>`,
      notice,
    );
  };

  app.get('/maintenance', async (req, reply) => {
    const a = await ctx.admin(req, reply, 'admin.stats');
    if (!a) return reply;
    return sendPage(reply, await maintenancePage(a));
  });

  app.post<{ Body: { confirm?: string } }>(
    '/maintenance/cleanup',
    { schema: { body: { type: 'object', required: ['_csrf'], properties: { _csrf: { type: 'string', maxLength: 100 }, confirm: { type: 'string', maxLength: 3 } } } } },
    async (req, reply) => {
      const a = await ctx.change(req, reply, 'admin.cleanup');
      if (!a) return reply;
      if (req.body.confirm !== 'yes') return sendPage(reply, confirmPage('maintenance', a.viewer, 'Delete every expired row now?', '/maintenance/cleanup', {}, '/maintenance'));
      const { actor } = a;
      const who = { actor: actor.name, userId: actor.userId ?? null, ip: actor.ip ?? null, mac: actor.mac ?? null, sessionId: actor.sessionId ?? null };
      try {
        const pass = await deps.housekeeper.runOnce();
        const counts = pass.deleted as unknown as Record<string, number>;
        deps.audit.record({ action: 'admin.cleanup', outcome: pass.busy ? 'failure' : 'success', ...who, detail: { ...counts, busy: pass.busy, elsewhere: pass.elsewhere } });
        const notice: Notice = pass.busy
          ? { kind: 'error', text: 'The database stayed locked by another writer: the counts are partial. Run it again.' }
          : pass.elsewhere
            ? { kind: 'ok', text: 'Another node was running housekeeping at the same moment: nothing more to do here.' }
            : { kind: 'ok', text: `Cleanup done: ${Object.values(counts).reduce((n, c) => n + c, 0)} row(s) deleted.` };
        return sendPage(reply, await maintenancePage(a, notice, counts));
      } catch (err) {
        if (!(err instanceof StoreFailure)) throw err;
        deps.audit.record({ action: 'admin.cleanup', outcome: 'failure', ...who, detail: { reason: err.failure } });
        return sendPage(reply, await maintenancePage(a, noticeFor(err)));
      }
    },
  );
}
