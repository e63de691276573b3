import os from 'node:os';
import { localMac } from '../client/device.js';
import type { HellwallClient } from '../client/client.js';
import { need, text, type Command, type Ctx, type OptionDefs, type Parsed } from './command.js';
import { CONNECTION_OPTIONS, readLine, refused, withClient } from './client-connection.js';
import { readFaceImage } from './client-face.js';
import { UsageError } from './errors.js';
import { printable } from './output.js';
import { readSecret } from './secret.js';

// `hellwall client recovery …`: self-service recovery [P-4.17]–[P-4.20] from the command line, the
// menu's Recovery form for scripts and for people who prefer options. Each flow stands in for one
// lost factor only (ASVS 6.4.3), so it takes every other factor the operator may have, the face
// (`--face`) included: an operator who enrolled one cannot recover without it.

const FLOWS = ['request', 'password', 'totp', 'device'] as const;
type Flow = (typeof FLOWS)[number];

const OPTIONS: OptionDefs = {
  email: { type: 'string', value: 'E', help: 'your email (required)' },
  mac: { type: 'string', value: 'M', help: "this device's MAC: the recovery passcode works only from the device that asked for it (default: this machine's)" },
  passcode: { type: 'string', value: 'C', help: 'the recovery passcode from the mail (without it: request one, then ask for it)' },
  totp: { type: 'string', value: 'CODE', help: 'password, device: the code from your authenticator app' },
  'recovery-code': { type: 'string', value: 'CODE', help: 'password (instead of --totp), totp: one of your recovery codes' },
  face: { type: 'string', value: 'FILE', file: true, help: 'a JPEG of your face, if you have the face factor enrolled; `camera` captures one with ffmpeg' },
  'old-mac': { type: 'string', value: 'M', help: 'device: the device replaced (only its sessions end; default: every other device\'s)' },
  name: { type: 'string', value: 'TEXT', help: 'device: a name for this device in your device list' },
  ip: { type: 'string', value: 'IP', help: 'request: the address to report in the mail (behind a proxy)' },
  ...CONNECTION_OPTIONS,
};

/** The options each flow takes beside email, mac and the connection options. */
const FLOW_OPTIONS: Readonly<Record<Flow, readonly string[]>> = {
  request: ['ip'],
  password: ['passcode', 'totp', 'recovery-code', 'face'],
  totp: ['passcode', 'recovery-code', 'face'],
  device: ['passcode', 'totp', 'old-mac', 'name', 'face'],
};

/** Refuses, before anything is read or sent, an option the flow does not take or lacks one it needs. */
function checkOptions(flow: Flow, args: Parsed): void {
  for (const [name, value] of Object.entries(args.values)) {
    if (value === undefined || name === 'help' || name === 'email' || name === 'mac' || name in CONNECTION_OPTIONS) continue;
    if (!FLOW_OPTIONS[flow].includes(name)) throw new UsageError(`client recovery ${flow} has no option --${name}`);
  }
  need(args, 'email');
  if (flow === 'password' && (text(args, 'totp') === undefined) === (text(args, 'recovery-code') === undefined)) {
    throw new UsageError('client recovery password needs --totp or --recovery-code (one of them)');
  }
  if (flow === 'totp') need(args, 'recovery-code');
  if (flow === 'device') need(args, 'totp');
}

/** A recovery passcode by mail, bound to `mac` [P-4.17]. */
async function requestPasscode(client: HellwallClient, args: Parsed, email: string, mac: string): Promise<number> {
  const ip = text(args, 'ip');
  const res = await client.command('recovery.request', { email, mac, clientTime: Date.now(), ...(ip !== undefined && { ip }) });
  if (res.status !== 'ok') throw refused(res);
  return res.expiresInSeconds;
}

/** Sends the flow's command; answers how many sessions it ended. */
async function recover(client: HellwallClient, flow: Exclude<Flow, 'request'>, args: Parsed, base: { email: string; passcode: string; mac: string; clientTime: number; face?: string }, secret: string): Promise<number> {
  const totp = text(args, 'totp');
  const recoveryCode = text(args, 'recovery-code');
  const res =
    flow === 'password'
      ? await client.command('recovery.password', { ...base, newPassword: secret, ...(totp !== undefined && { totp }), ...(recoveryCode !== undefined && { recoveryCode }) })
      : flow === 'totp'
        ? await client.command('recovery.totp', { ...base, password: secret, recoveryCode: need(args, 'recovery-code') })
        : await client.command('recovery.device', {
            ...base,
            password: secret,
            totp: need(args, 'totp'),
            ...(text(args, 'old-mac') !== undefined && { oldMac: text(args, 'old-mac')! }),
            ...(text(args, 'name') !== undefined && { name: text(args, 'name')! }),
          });
  if (res.status !== 'ok') throw refused(res);
  return res.sessionsEnded;
}

const DONE: Readonly<Record<Exclude<Flow, 'request'>, (ended: number, mac: string) => string>> = {
  password: (ended) => `password changed; ${ended} session(s) ended: log in with the new one`,
  totp: (ended) => `authenticator removed; ${ended} session(s) ended: your next login enrols a new one`,
  device: (ended, mac) => `device ${printable(mac)} registered; ${ended} session(s) of the old device ended`,
};

export const recoveryCommand: Command = {
  name: 'recovery',
  summary: 'recover by yourself: a forgotten password, a lost authenticator, a new device',
  args: FLOWS.join('|'),
  options: OPTIONS,
  details: [
    '  request    only mail a recovery passcode (for scripts that recover in two steps)',
    '  password   forgotten password: --totp or --recovery-code; the new password from $HELLWALL_NEW_PASSWORD or a prompt',
    '  totp       lost authenticator: --recovery-code; your password from $HELLWALL_PASSWORD or a prompt',
    '  device     new device (this one): --totp; your password from $HELLWALL_PASSWORD or a prompt',
    'Without --passcode a recovery passcode is requested, then asked for (on a terminal). Each flow needs',
    'every factor you still have: with the face factor enrolled, --face too.',
  ].join('\n'),
  examples: [
    'hellwall client recovery password --email ops@example.com --totp 492039',
    'hellwall client recovery device --email ops@example.com --passcode K7M2QX --totp 492039 --face me.jpg',
  ],
  run: async (ctx: Ctx, args: Parsed) => {
    const flow = args.positionals[0] as Flow;
    if (!FLOWS.includes(flow)) throw new UsageError(`unknown recovery flow ${JSON.stringify(args.positionals[0])}: one of ${FLOWS.join(', ')}`);
    checkOptions(flow, args);
    const email = need(args, 'email');
    const mac = text(args, 'mac') ?? localMac(os.networkInterfaces());
    if (!mac) throw new UsageError('--mac is required (this machine has no network interface with a MAC)');
    if (flow === 'request') {
      return withClient(ctx, args, async (client) => {
        const ttl = await requestPasscode(client, args, email, mac);
        ctx.out(`a recovery passcode is on its way to ${printable(email)} if the account can recover by itself; it works from ${printable(mac)} only, for ${ttl} s`);
        return 0;
      });
    }
    let passcode = text(args, 'passcode');
    if (passcode === undefined && !ctx.io.stdin.isTTY) throw new UsageError('--passcode is required (or run it on a terminal to be asked)');
    const faceSpec = text(args, 'face');
    // Read before anything is sent: a missing file must not cost a recovery passcode attempt.
    const face = faceSpec === undefined ? undefined : readFaceImage(faceSpec);
    const secret =
      flow === 'password' ? await readSecret({ HELLWALL_PASSWORD: ctx.env.HELLWALL_NEW_PASSWORD }, ctx.io, 'New password: ') : await readSecret(ctx.env, ctx.io, 'Password: ');
    return withClient(ctx, args, async (client) => {
      if (passcode === undefined) {
        await requestPasscode(client, args, email, mac);
        passcode = await readLine(ctx, 'Recovery passcode from the mail: ');
      }
      const ended = await recover(client, flow, args, { email, passcode, mac, clientTime: Date.now(), ...(face !== undefined && { face }) }, secret);
      ctx.out(DONE[flow](ended, mac));
      return 0;
    });
  },
};
