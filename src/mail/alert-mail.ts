// The security alerts' mail templates (src/services/alerts.ts decides when each is sent). Facts are
// plain values the services hand over; none is ever a secret (no password, passcode, token, TOTP
// secret or code, recovery code): an alert says what happened, where from, and what to do if it
// was not the owner.

import type { MailMessage } from './mailer.js';

/** Every alert, by the name the config (`alerts.disabled`) and the services use. */
export const ALERT_NAMES = [
  'new-device',
  'password-changed',
  'totp-enrolled',
  'totp-removed',
  'recovery-code-used',
  'account-locked',
  'session-reuse',
] as const;

export type AlertName = (typeof ALERT_NAMES)[number];

/** Facts an alert may mention; unknown or absent ones are left out of the text. */
export type AlertFacts = Readonly<Record<string, string | number | boolean | null | undefined>>;

const NOT_YOU = 'If this was not you, change your password at once and tell your administrator.';

const when = (at: unknown): string => new Date(typeof at === 'number' ? at : 0).toISOString();
const text = (v: unknown): string | undefined => (v === undefined || v === null || v === '' ? undefined : String(v));

/** `from IP address 192.0.2.10, device MAC 00:1a:…` for the facts that are present. */
function origin(f: AlertFacts): string {
  const parts = [text(f.ip) && `IP address ${text(f.ip)}`, text(f.mac) && `device MAC ${text(f.mac)}`, text(f.device) && `"${text(f.device)}"`].filter(Boolean);
  return parts.length > 0 ? ` from ${parts.join(', ')}` : '';
}

type Template = (f: AlertFacts) => { subject: string; lines: string[] };

const TEMPLATES: Readonly<Record<AlertName, Template>> = {
  'new-device': (f) => ({
    subject: 'New sign-in to your Hellwall account',
    lines: [
      `New sign-in to your Hellwall account at ${when(f.at)}: device ${text(f.mac) ?? 'unknown'}${text(f.device) ? ` ("${text(f.device)}")` : ''}, address ${text(f.ip) ?? 'unknown'}.`,
      f.newDevice && f.newAddress
        ? 'Neither this device nor this address was used with your account before.'
        : f.newDevice
          ? 'This device was not used with your account before.'
          : 'This address was not used with your account before.',
      '',
      `${NOT_YOU} Your administrator can end the session.`,
    ],
  }),
  'password-changed': (f) => ({
    subject: 'Your Hellwall password was changed',
    lines: [
      `The password of your Hellwall account was changed at ${when(f.at)}${f.by === 'admin' ? ' by an administrator' : origin(f)}.`,
      f.by === 'admin' ? 'Every session of yours has ended.' : 'Every other session of yours has ended.',
      '',
      'If this was not you, tell your administrator at once.',
    ],
  }),
  'totp-enrolled': (f) => ({
    subject: 'An authenticator app was added to your Hellwall account',
    lines: [`An authenticator app (TOTP) was enrolled for your Hellwall account at ${when(f.at)}${origin(f)}.`, '', NOT_YOU],
  }),
  'totp-removed': (f) => ({
    subject: 'The authenticator app was removed from your Hellwall account',
    lines: [
      `The authenticator app (TOTP) of your Hellwall account was removed at ${when(f.at)}${f.by === 'admin' ? ' by an administrator' : origin(f)}.`,
      'You will be asked to enrol one again at your next login.',
      '',
      NOT_YOU,
    ],
  }),
  'recovery-code-used': (f) => ({
    subject: 'A recovery code of your Hellwall account was used',
    lines: [
      `One of your Hellwall recovery codes was used at ${when(f.at)}${origin(f)}.`,
      ...(typeof f.remaining === 'number' ? [`${f.remaining} unused recovery code(s) remain.`] : []),
      '',
      NOT_YOU,
    ],
  }),
  'account-locked': (f) => ({
    subject: 'Your Hellwall account is locked for a while',
    lines: [
      `Too many sign-in attempts for your Hellwall account: it is locked until ${when(f.until)}${text(f.ip) ? ` (the last attempt came from IP address ${text(f.ip)})` : ''}.`,
      'Addresses you signed in from before are not held by the lock.',
      '',
      'If these attempts were not yours, someone is guessing your password: tell your administrator.',
    ],
  }),
  'session-reuse': (f) => ({
    subject: 'A Hellwall session of yours was ended: its token was used twice',
    lines: [
      `At ${when(f.at)} an old token of one of your Hellwall sessions${text(f.sessionId) ? ` (session ${text(f.sessionId)})` : ''} was presented again${origin(f)}, after it had been replaced.`,
      'Either a program kept a stale copy, or someone copied the token. The session has ended: sign in again.',
      '',
      'If this keeps happening, tell your administrator.',
    ],
  }),
};

/** The message for alert `name` to `to`. */
export function alertMail(name: AlertName, to: string, facts: AlertFacts): MailMessage {
  const { subject, lines } = TEMPLATES[name](facts);
  return { to, subject, text: lines.join('\n') };
}
