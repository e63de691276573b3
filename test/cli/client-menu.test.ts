import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { readTokenFile } from '../../src/client/token-file.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { CLI } from '../helpers/processes.js';
import { passcodeFrom } from '../helpers/smtp-sink.js';
import { startTerminal, type Terminal } from '../helpers/tmux.js';
import { enrolTotp, mailMatching } from '../helpers/totp.js';

// `hellwall client` alone, on a real pseudo-terminal (tmux), used as a person would: the menu, the
// prompts, the mail, the keys. The server is the harness's (real TLS, real SMTP sink); the client
// is the built CLI in its own process, as the operator runs it.

const ADMIN = { email: 'root@example.com', phone: '+1 555 0199', password: 'admin passphrase for the menu', role: 'admin' };

async function menu(t: Test, h: Harness): Promise<{ term: Terminal; tokenFile: string }> {
  const tokenFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-menu-')), 'token');
  const term = startTerminal(t, [process.execPath, CLI, 'client'], {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TERM: 'xterm-256color',
    NO_COLOR: '1',
    HELLWALL_DATA_DIR: h.dataDir,
    HELLWALL_PORT: String(h.port),
    HELLWALL_TOKEN_FILE: tokenFile,
  });
  await term.waitFor(/Hellwall: not logged in/);
  return { term, tokenFile };
}

/** Answers a prompt once it shows. */
async function answer(term: Terminal, prompt: RegExp, text: string): Promise<void> {
  await term.waitFor(prompt);
  term.type(text);
  term.press('Enter');
}

async function logIn(term: Terminal, h: Harness, user: typeof ALICE, totp = '', face = ''): Promise<void> {
  term.press('Enter'); // "Log in" is the first choice
  await answer(term, /Email:/, user.email);
  await answer(term, /Phone:/, user.phone);
  const since = h.smtp.messages.length;
  await answer(term, /Password:/, user.password);
  const screen = await term.waitFor(/MAC:|Passcode from the mail:/);
  if (/MAC:/.test(screen) && !/Passcode from the mail:/.test(screen)) {
    term.type('00:1a:2b:3c:4d:5e');
    term.press('Enter');
  }
  const passcode = passcodeFrom(await h.smtp.waitFor(user.email, since));
  await answer(term, /Passcode from the mail:/, passcode);
  // The server never says which factors an account has: the menu always offers the TOTP prompt.
  await answer(term, /TOTP code from your authenticator \(Enter if you have none\):/, totp);
  // And the face prompt, since the protocol has the face factor; an empty answer sends no image.
  await answer(term, /Face photo, a JPEG file or "camera" \(Enter if you have no face factor\):/, face);
  await term.waitFor(new RegExp(`Logged in as ${user.email.replace('.', '\\.')}`));
}

t.test('log in through the menu with the mailed passcode, list sessions, exit', async (t) => {
  const h = await startHarness(t, { users: [ALICE] });
  // The client sends its own clock's time (clientTime); the server's fake clock must agree.
  h.clock.now = Date.now();
  const { term, tokenFile } = await menu(t, h);
  await logIn(term, h, ALICE);
  t.notMatch(term.screen(), ALICE.password, 'the password was never echoed');
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the token is stored 0600');
  const stored = readTokenFile(tokenFile)!.stored;
  t.equal(stored.email, ALICE.email);

  await term.waitFor(/Hellwall: logged in as alice@example\.com \(user\)/);
  term.press('Enter'); // "My sessions" is the first choice once logged in
  const sessions = await term.waitFor(/Log out everywhere/);
  t.match(sessions, new RegExp(`\\*\\s+\\d+\\s+${stored.mac}\\s+127\\.0\\.0\\.1`), 'this session, marked current');
  term.type('Back');
  term.press('Enter');
  await term.waitFor(/Hellwall: logged in as/);
  term.type('Exit');
  term.press('Enter');
  await term.waitFor(/\[exit 0\]/);

  const client = await h.connect();
  t.match(await client.check({ token: stored.token, mac: stored.mac, request: 'inventory.read' }), { status: 'authorized' }, 'the stored token works');
});

t.test('an admin registers an operator; log out everywhere ends the session and the stored token', async (t) => {
  const h = await startHarness(t, { users: [ALICE, ADMIN] });
  h.clock.now = Date.now();
  const { term, tokenFile } = await menu(t, h);
  await logIn(term, h, ADMIN);
  await term.waitFor(/Register an operator/);
  term.type('Register');
  term.press('Enter');
  await answer(term, /New operator email:/, 'new@example.com');
  await answer(term, /Phone:/, '+1 555 0142');
  await term.waitFor(/Role/);
  term.press('Enter'); // user
  await answer(term, /Their password:/, 'a new operator passphrase');
  await answer(term, /Again:/, 'a new operator passphrase');
  await term.waitFor(/Added user new@example\.com/);
  t.notMatch(term.screen(), /a new operator passphrase/, 'no password on the screen');
  t.ok(await h.app.store.findUserByEmail('new@example.com'), 'the operator exists');

  const stored = readTokenFile(tokenFile)!.stored;
  await term.waitFor(/Hellwall: logged in as root@example\.com \(admin\)/);
  term.type('My sessions');
  term.press('Enter');
  await term.waitFor(/Log out everywhere/);
  term.type('Log out everywhere');
  term.press('Enter');
  await term.waitFor(/Logged out everywhere: 1 session\(s\) ended/);
  await term.waitFor(/Hellwall: not logged in/);
  t.equal(readTokenFile(tokenFile), null, 'the token file is gone');
  const client = await h.connect();
  t.match(await client.check({ token: stored.token, mac: stored.mac, request: 'x' }), { status: 'unauthorized' });
  term.press('C-d');
  await term.waitFor(/\[exit 0\]/);
});

t.test('an operator with an authenticator gives its code at the TOTP prompt', async (t) => {
  const h = await startHarness(t, { users: [ALICE] });
  h.clock.now = Date.now();
  const client = await h.connect();
  const { token } = await h.login(client);
  const enrolled = await enrolTotp(h, client, token);
  const { term, tokenFile } = await menu(t, h);
  // The confirmation spent this step's code; a login uses the next one (the client's clock is
  // within the allowed skew of the server's either way).
  h.clock.advance(30_000);
  const code = enrolled.code();
  await logIn(term, h, ALICE, code);
  t.notMatch(term.screen(), code, 'the code was not echoed');
  t.equal(readTokenFile(tokenFile)?.stored.email, ALICE.email);
  term.type('Exit');
  term.press('Enter');
  await term.waitFor(/\[exit 0\]/);
});

t.test('Ctrl-C at the menu leaves cleanly (130), and at a password prompt too', async (t) => {
  const h = await startHarness(t, { users: [ALICE] });
  const first = await menu(t, h);
  first.term.press('C-c');
  const screen = await first.term.waitFor(/\[exit 130\]/);
  t.match(screen, /cancelled/);
  t.notMatch(screen, /at .*\.js:\d+/, 'no stack trace');

  const second = await menu(t, h);
  second.term.press('Enter');
  await answer(second.term, /Email:/, ALICE.email);
  await answer(second.term, /Phone:/, ALICE.phone);
  await second.term.waitFor(/Password:/);
  second.term.type('half a pass');
  second.term.press('C-c');
  const after = await second.term.waitFor(/\[exit 130\]/);
  t.notMatch(after, /half a pass/, 'what was typed is not shown');
  t.notMatch(after, /Error|at .*\.js:\d+/, 'no stack trace');
});

t.test('the recovery form asks for the face photo as login does, and reads it as a JPEG file', async (t) => {
  const h = await startHarness(t, { users: [ALICE] });
  h.clock.now = Date.now();
  const client = await h.connect();
  const { token } = await h.login(client);
  const enrolled = await enrolTotp(h, client, token);
  h.clock.advance(30_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-menu-face-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const png = path.join(dir, 'me.png');
  writeFileSync(png, Buffer.from('89504e470d0a1a0a', 'hex'));
  const { term } = await menu(t, h);

  /** Recovery → Forgotten password, up to the face prompt; answers it with `face`. */
  const forgotten = async (face: string): Promise<void> => {
    await term.waitFor(/Hellwall: not logged in/);
    term.type('Recovery');
    term.press('Enter');
    await term.waitFor(/Forgotten password/);
    term.type('Forgotten');
    term.press('Enter');
    await answer(term, /Email:/, ALICE.email);
    const since = h.smtp.messages.length;
    const screen = await term.waitFor(/MAC:|Recovery passcode from the mail:/);
    if (/MAC:/.test(screen) && !/Recovery passcode from the mail:/.test(screen)) {
      term.type('00:1a:2b:3c:4d:5e');
      term.press('Enter');
    }
    const passcode = passcodeFrom(await mailMatching(h, ALICE.email, since, /Subject: Your Hellwall recovery passcode/));
    await answer(term, /Recovery passcode from the mail:/, passcode);
    await answer(term, /newPassword:/, 'a brand new passphrase for spring');
    await answer(term, /totp \(optional: Enter to skip\):/, enrolled.code());
    await answer(term, /recoveryCode \(optional: Enter to skip\):/, '');
    await answer(term, /Face photo, a JPEG file or "camera" \(Enter if you have no face factor\):/, face);
  };

  await forgotten(png);
  const refused = await term.waitFor(/not a JPEG image/);
  t.notMatch(refused, /face \(optional/, 'the face is never asked for as text');
  t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'authorized' }, 'nothing was sent: the session goes on');

  await forgotten('');
  await term.waitFor(/Done: \{"sessionsEnded":1\}/);
  t.match(await client.check({ token, mac: MAC, request: 'x.read' }), { status: 'unauthorized' }, 'without a face factor, Enter sends none and the recovery goes through');
  term.type('Exit');
  term.press('Enter');
  await term.waitFor(/\[exit 0\]/);
});
