import type { NetworkInterfaceInfo } from 'node:os';

// A session is bound to the MAC the client logs in with [P-3.6]; the operator should not have to
// look it up. The first real interface's address (sorted by name, so it is the same every time)
// is this machine's; loopback and all-zero addresses (containers, tunnels) are not.

/** This machine's MAC from `os.networkInterfaces()`, or undefined when it has none to offer. */
export function localMac(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string | undefined {
  for (const name of Object.keys(interfaces).sort()) {
    for (const i of interfaces[name] ?? []) {
      if (!i.internal && i.mac && i.mac !== '00:00:00:00:00:00') return i.mac.toLowerCase();
    }
  }
  return undefined;
}
