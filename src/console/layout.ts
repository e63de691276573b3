import { html, type Html, type HtmlValue } from './html.js';

export type PageName = 'overview' | 'users' | 'sessions' | 'audit' | 'maintenance';

const NAV: ReadonlyArray<readonly [PageName, string, string]> = [
  ['overview', '/overview', 'Overview'],
  ['users', '/users', 'Users'],
  ['sessions', '/sessions', 'Sessions'],
  ['audit', '/audit', 'Audit'],
  ['maintenance', '/maintenance', 'Maintenance'],
];

/** A notice above the page's content: the result of an action, or why it was refused. */
export interface Notice {
  readonly kind: 'ok' | 'error';
  readonly text: string;
}

/** Who is looking, for the header and the forms: the administrator and the CSRF token of their session. */
export interface Viewer {
  readonly email: string;
  readonly csrf: string;
  readonly idleSeconds: number;
}

/**
 * The whole document: the stylesheet and the script are the only resources, both from this server
 * (the CSP allows nothing else), and nothing in it is inline.
 */
export function document(title: string, body: Html, opts: { idleSeconds?: number } = {}): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Hellwall console</title>
<link rel="stylesheet" href="/static/console.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<script src="/static/console.js" defer></script>
</head>
<body${opts.idleSeconds ? html` data-idle-seconds="${opts.idleSeconds}"` : ''}>
${body}
</body>
</html>
`;
}

/** A page behind the login: header with navigation and logout, the notice, the content. */
export function page(active: PageName, title: string, viewer: Viewer, content: HtmlValue, notice?: Notice): Html {
  const nav = NAV.map(
    ([name, href, label]) => html`<li><a href="${href}"${name === active ? html` aria-current="page"` : ''}>${label}</a></li>`,
  );
  return document(
    title,
    html`<header class="top">
<a class="brand" href="/overview">Hellwall console</a>
<nav aria-label="Console pages"><ul>${nav}</ul></nav>
<form method="post" action="/logout" class="logout">
${csrfField(viewer.csrf)}
<span class="who">${viewer.email}</span>
<button type="submit">Log out</button>
</form>
</header>
<main id="main">
<h1>${title}</h1>
${notice ? noticeBox(notice) : ''}
${content}
</main>`,
    { idleSeconds: viewer.idleSeconds },
  );
}

export function noticeBox(notice: Notice): Html {
  return html`<p class="notice ${notice.kind}" role="${notice.kind === 'error' ? 'alert' : 'status'}">${notice.text}</p>`;
}

export function csrfField(token: string): Html {
  return html`<input type="hidden" name="_csrf" value="${token}">`;
}

/** A one-button form posting `fields` to `action`; `confirm` marks it destructive (asked first). */
export function actionForm(viewer: Viewer, action: string, label: string, fields: Record<string, string | number>, confirm?: string): Html {
  const hidden = Object.entries(fields).map(([k, v]) => html`<input type="hidden" name="${k}" value="${String(v)}">`);
  return html`<form method="post" action="${action}" class="inline"${confirm ? html` data-confirm="${confirm}"` : ''}>
${csrfField(viewer.csrf)}${hidden}<button type="submit"${confirm ? html` class="danger"` : ''}>${label}</button></form>`;
}

/**
 * The page a destructive action shows when it arrives unconfirmed (no script, or a forged form):
 * the same fields again with `confirm=yes`, and a way back.
 */
export function confirmPage(active: PageName, viewer: Viewer, question: string, action: string, fields: Record<string, string>, back: string): Html {
  const hidden = Object.entries(fields)
    // Never a password: a form that carries one confirms with a checkbox of its own instead.
    .filter(([k]) => k !== '_csrf' && k !== 'confirm' && !/password/i.test(k))
    .map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`);
  return page(
    active,
    'Please confirm',
    viewer,
    html`<form method="post" action="${action}" class="confirm">
<p>${question}</p>
${csrfField(viewer.csrf)}${hidden}<input type="hidden" name="confirm" value="yes">
<button type="submit" class="danger">Yes, do it</button> <a href="${back}">Cancel</a>
</form>`,
  );
}
