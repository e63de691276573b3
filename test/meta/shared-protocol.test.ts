import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { runCli } from '../helpers/cli.js';
import { sharedProtocol } from '../helpers/shared-protocol.js';
import { LogSink } from '../helpers/log-sink.js';

// The suite compiles the protocol once per test process and hands it to every app and in-process
// main() (AppDeps.protocol, CliIo.protocol). These show that the handed-in protocol is the one
// used, so the shortcut cannot silently stop working, and that an app without one compiles its own.

t.test('an app uses the protocol it is given, and compiles its own without one', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-shared-protocol-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({}, { dataDir, port: 0, ops: { enabled: false }, console: { enabled: false } }, undefined);
  const log = createLogger('silent', new LogSink());
  const given = sharedProtocol();
  t.equal(sharedProtocol(), given, 'one protocol per test process');

  const withIt = buildApp({ config, log, protocol: given });
  t.teardown(() => withIt.close());
  t.equal(withIt.protocol, given, 'the app holds the protocol it was given');

  const without = buildApp({ config, log });
  t.teardown(() => without.close());
  t.not(without.protocol, given, 'without one, the app compiled its own');
  t.same([...without.protocol.commands.keys()], [...given.commands.keys()], 'from the same protocol/ files');
});

t.test('main() in-process uses the protocol it is given', async (t) => {
  // `client send` looks the command name up in the protocol: a name present only in the protocol
  // handed in is found, so that protocol is the one consulted. Nothing listens on port 1: the
  // command then fails to connect, after the lookup, with another exit code than a usage error's 2.
  const given = sharedProtocol();
  const entry = given.commands.get(0)!;
  const renamed = { ...given, commands: new Map([...given.commands].map(([code, c]) => [code, code === 0 ? { ...c, name: 'only.in.the.given.protocol' } : c])) };
  const env = { HELLWALL_HOST: '127.0.0.1', HELLWALL_PORT: '1', PATH: process.env.PATH };
  const unknown = await runCli(['client', 'send', entry.name], env, { protocol: renamed });
  t.equal(unknown.code, 2, `${entry.name} is unknown to the given protocol (usage error)`);
  t.match(unknown.stderr, /unknown command/);
  const found = await runCli(['client', 'send', 'only.in.the.given.protocol'], env, { protocol: renamed });
  t.not(found.code, 2, 'a name only the given protocol has is found');
  t.notMatch(found.stderr, /unknown command/);
});
