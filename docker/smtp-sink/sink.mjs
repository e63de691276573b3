// A development SMTP sink: accepts every message on SMTP_PORT (no TLS, no auth), keeps the last
// MAX_MESSAGES in memory, logs each one as a JSON line and shows them over HTTP on HTTP_PORT:
//   GET /               the messages, newest first, as a page
//   GET /messages       the same as JSON: [{ id, receivedAt, from, to, subject, text }]
//   GET /messages/N.eml one message as received
//   DELETE /messages    forget them all
// For trying mail flows on a workstation only: it delivers nothing and protects nothing.
import http from 'node:http';
import { SMTPServer } from 'smtp-server';

const SMTP_PORT = Number(process.env.SMTP_PORT ?? 1025);
const HTTP_PORT = Number(process.env.HTTP_PORT ?? 8025);
const MAX_MESSAGES = Number(process.env.MAX_MESSAGES ?? 200);
const MAX_BYTES = 1024 * 1024;

const messages = [];
let nextId = 1;

const log = (fields) => process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...fields }) + '\n');

/** Headers (unfolded, lower-case names) and body of a raw RFC 5322 message. */
function split(raw) {
  const text = raw.toString('utf8');
  const at = text.search(/\r?\n\r?\n/);
  const head = at < 0 ? text : text.slice(0, at);
  const body = at < 0 ? '' : text.slice(at).replace(/^\r?\n\r?\n/, '');
  const headers = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { headers, body };
}

/** The readable text of a single-part message (quoted-printable and base64 decoded). */
function decodeBody(headers, body) {
  const encoding = (headers['content-transfer-encoding'] ?? '').toLowerCase();
  if (encoding === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (encoding === 'quoted-printable') {
    const bytes = body.replace(/=\r?\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
    return Buffer.from(bytes, 'latin1').toString('utf8');
  }
  return body;
}

const smtp = new SMTPServer({
  name: 'smtp-sink',
  banner: 'hellwall development SMTP sink: nothing is delivered',
  authOptional: true,
  disabledCommands: ['STARTTLS', 'AUTH'],
  size: MAX_BYTES,
  logger: false,
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', () => {
      if (stream.sizeExceeded) {
        callback(Object.assign(new Error('message too large'), { responseCode: 552 }));
        return;
      }
      const raw = Buffer.concat(chunks);
      const { headers, body } = split(raw);
      const message = {
        id: nextId++,
        receivedAt: new Date().toISOString(),
        from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        to: session.envelope.rcptTo.map((r) => r.address),
        subject: headers.subject ?? '',
        text: decodeBody(headers, body),
        raw,
      };
      messages.push(message);
      if (messages.length > MAX_MESSAGES) messages.shift();
      log({ msg: 'mail received', id: message.id, from: message.from, to: message.to, subject: message.subject, text: message.text });
      callback();
    });
  },
});
smtp.on('error', (err) => log({ msg: 'smtp error', err: err.message }));

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const summary = ({ raw, ...rest }) => rest;

const web = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://sink');
  if (req.method === 'GET' && url.pathname === '/messages') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(messages.map(summary)));
    return;
  }
  if (req.method === 'DELETE' && url.pathname === '/messages') {
    messages.length = 0;
    res.writeHead(204).end();
    return;
  }
  const eml = /^\/messages\/(\d+)\.eml$/.exec(url.pathname);
  if (req.method === 'GET' && eml) {
    const found = messages.find((m) => m.id === Number(eml[1]));
    if (!found) res.writeHead(404).end();
    else res.writeHead(200, { 'content-type': 'message/rfc822' }).end(found.raw);
    return;
  }
  if (req.method === 'GET' && url.pathname === '/') {
    const items = [...messages].reverse().map((m) =>
      `<article><h2>${escapeHtml(m.subject || '(no subject)')}</h2>` +
      `<p>#${m.id} · ${escapeHtml(m.receivedAt)} · from ${escapeHtml(m.from)} to ${escapeHtml(m.to.join(', '))} · <a href="/messages/${m.id}.eml">raw</a></p>` +
      `<pre>${escapeHtml(m.text)}</pre></article>`);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`<!doctype html><meta charset="utf-8"><title>SMTP sink</title>` +
      `<style>body{font:14px sans-serif;max-width:60em;margin:2em auto}article{border-top:1px solid #ccc}pre{white-space:pre-wrap}</style>` +
      `<h1>SMTP sink: ${messages.length} message(s)</h1><p>Reload to refresh. Nothing here was delivered.</p>${items.join('') || '<p>No mail yet.</p>'}`);
    return;
  }
  res.writeHead(404).end();
});

smtp.listen(SMTP_PORT, '0.0.0.0', () => log({ msg: 'smtp listening', port: SMTP_PORT }));
web.listen(HTTP_PORT, '0.0.0.0', () => log({ msg: 'web listening', port: HTTP_PORT }));

// PID 1 in its container: stop promptly on docker stop / Ctrl-C.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    log({ msg: 'shutting down', signal });
    web.close();
    web.closeAllConnections?.();
    smtp.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
