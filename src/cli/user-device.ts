import type { DeviceView } from '../services/device-service.js';
import { JSON_OPTION, flag, need, text, type Command } from './command.js';
import { UsageError } from './errors.js';
import { withApp, cliActor } from './local.js';
import { isoTime, json, printable, table } from './output.js';

// `hellwall user device add|list|remove`: an operator's known devices, through the device service
// the wire's admin.device.* commands use (same checks, same audit rows, actor cli:<os user>).

const ACTIONS = ['add', 'list', 'remove'] as const;

export function devicesText(devices: readonly DeviceView[], asJson: boolean): string {
  if (asJson) return json(devices);
  return table(
    ['mac', 'name', 'registered', 'first seen', 'last seen', 'last address'],
    devices.map((d) => [d.mac, d.name, d.registered ? `yes (${d.registeredBy ?? '?'})` : 'no', isoTime(d.firstSeenAt), isoTime(d.lastSeenAt), d.lastIp]),
  );
}

export const userDevice: Command = {
  name: 'device',
  summary: "an operator's known devices: add (register) a MAC, list them, remove one",
  args: 'add|list|remove',
  local: true,
  options: {
    email: { type: 'string', value: 'E', help: "the operator's email (required)" },
    mac: { type: 'string', value: 'M', help: 'the device MAC, e.g. 00:1a:2b:3c:4d:5e (add, remove)' },
    name: { type: 'string', value: 'N', help: 'a name for the device (add)' },
    ...JSON_OPTION,
  },
  details:
    'Registered devices are the only ones that can log in where devices.requireRegistered (or\n' +
    'devices.requireRegisteredRoles) says so. remove also ends the operator\'s sessions on that device.',
  examples: [
    "hellwall user device add --email ops@example.com --mac 00:1a:2b:3c:4d:5e --name 'desk PC'",
    'hellwall user device list --email ops@example.com',
    'hellwall user device remove --email ops@example.com --mac 00:1a:2b:3c:4d:5e',
  ],
  run: (ctx, args) => {
    const action = args.positionals[0] as (typeof ACTIONS)[number];
    if (!ACTIONS.includes(action)) throw new UsageError(`user device: add, list or remove, not ${printable(String(action))}`);
    const email = need(args, 'email');
    const mac = action === 'list' ? '' : need(args, 'mac');
    return withApp(ctx, async (app) => {
      const devices = app.services.devices;
      const actor = cliActor();
      if (action === 'list') ctx.out(devicesText(await devices.listFor(actor, email), flag(args, 'json')));
      else if (action === 'add') {
        const d = await devices.register(actor, email, mac, text(args, 'name') ?? null);
        ctx.out(flag(args, 'json') ? json(d) : `registered ${printable(d.mac)} for ${printable(email)}`);
      } else {
        const { sessionsEnded } = await devices.remove(actor, email, mac);
        ctx.out(flag(args, 'json') ? json({ sessionsEnded }) : `removed ${printable(mac)} from ${printable(email)}; ${sessionsEnded} session(s) ended`);
      }
      return 0;
    });
  },
};
