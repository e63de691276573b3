import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../helpers/root.js';
import t from 'tap';

/*
 * The protocol proved from a second language: a Python client (stdlib only, plus the types
 * quicktype generates from protocol/schemas) runs the seed flow and the conformance vectors
 * against the built server (dist/, which `npm test` builds first). See test/interop/README.md.
 */

const HERE = path.join(ROOT, 'test/interop');
const PYTHON = process.env.HELLWALL_PYTHON ?? 'python3';
const MODULES = ['test_flow', 'test_vectors'];

// Every Python test that must run and pass. A test missing from the run, skipped, or added without
// being listed here fails this file: a silently skipped check must not look like a passing one.
const EXPECTED = [
  'test_flow.ClientOfflineTest.test_a_response_must_echo_the_request_code',
  'test_flow.ClientOfflineTest.test_a_server_of_another_major_version_is_refused',
  'test_flow.ClientOfflineTest.test_device_is_sent_only_to_a_server_of_version_1_2_or_later',
  'test_flow.ClientOfflineTest.test_frame_encoding_matches_the_spec_example',
  'test_flow.ClientOfflineTest.test_schema_check_catches_what_the_generated_types_cannot',
  'test_flow.ClientOfflineTest.test_strict_mode_refuses_undeclared_fields',
  'test_flow.ClientOfflineTest.test_token_check_outcome_must_have_its_branch_fields',
  'test_flow.ClientOfflineTest.test_unknown_error_code_reads_as_internal_unless_strict',
  'test_flow.SmtpSinkTest.test_a_conversation_with_smtplib',
  'test_flow.SmtpSinkTest.test_commands_out_of_order_are_refused',
  'test_flow.SeedFlowTest.test_hello',
  'test_flow.SeedFlowTest.test_the_certificate_is_verified',
  'test_flow.SeedFlowTest.test_passcode_login_and_check',
  'test_flow.SeedFlowTest.test_a_schema_error_keeps_the_connection_open',
  'test_flow.SeedFlowTest.test_the_servers_limits_shape_what_is_sent',
  'test_flow.SeedFlowTest.test_pipelined_requests_are_answered_in_order',
  'test_flow.SessionCommandsTest.test_list_shows_each_login_with_its_device_and_marks_the_callers_session',
  'test_flow.SessionCommandsTest.test_logout_ends_the_callers_session_only',
  'test_flow.SessionCommandsTest.test_logout_all_ends_every_session_of_the_operator_and_no_other',
  'test_flow.RenewalTest.test_renewal_rotation_grace_and_reuse',
  'test_flow.TotpLoginTest.test_enrol_confirm_and_log_in_with_a_code_computed_here',
  'test_vectors.DecoderVectorsTest.test_decoder_vectors',
  'test_vectors.ExchangeVectorsTest.test_exchange_vectors',
];

// Several real servers, scrypt, a 2 s token life waited out, on a shared two-core machine.
t.setTimeout(240_000);

/** Runs python in its own process group, so that everything it started can be killed with it. */
function runPython(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  const child = spawn(PYTHON, args, { cwd: HERE, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  // unittest writes to stderr, print() to stdout: one stream, in arrival order, is what a reader wants.
  child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
  const killGroup = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => {
    output += `\n[python.test.ts] killed after ${timeoutMs} ms\n`;
    killGroup();
  }, timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      killGroup(); // a server the Python side failed to stop
      resolve({ code, output });
    });
  });
}

/** unittest -v result lines: `test_x (module.Class.test_x) ... ok` (3.11), or `(module.Class)` before. */
function results(output: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of output.matchAll(/^(test\w*) \(([\w.]+)\) \.\.\. (.+)$/gm)) {
    const [, method, where, status] = m as unknown as [string, string, string, string];
    const name = where.endsWith(`.${method}`) ? where : `${where}.${method}`;
    // A duplicate (a test printing mid-line, say) keeps the worse of the two.
    if (!out.has(name) || status !== 'ok') out.set(name, status);
  }
  return out;
}

t.test('the Python client runs the seed flow and the conformance vectors', async (t) => {
  const typesOut = mkdtempSync(path.join(os.tmpdir(), 'hellwall-pytypes-'));
  t.teardown(() => rmSync(typesOut, { recursive: true, force: true }));

  const gen = spawnSync(process.execPath, [path.join(ROOT, 'scripts/gen-clients.mjs'), '--lang', 'python', '--out', typesOut], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  t.equal(gen.status, 0, `gen-clients.mjs generates the Python types\n${gen.stderr}`);
  if (gen.status !== 0) return;

  const started = Date.now();
  const { code, output } = await runPython(['-B', '-m', 'unittest', '-v', ...MODULES], {
    ...process.env,
    HELLWALL_TYPES_DIR: path.join(typesOut, 'python'),
    HELLWALL_NODE: process.execPath,
    HELLWALL_ROOT: ROOT,
    PYTHONUNBUFFERED: '1',
  }, 200_000);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);

  t.equal(code, 0, 'python -m unittest exits 0');
  const ran = results(output);
  for (const name of EXPECTED) t.equal(ran.get(name), 'ok', `${name} ran and passed`);
  const unexpected = [...ran.keys()].filter((n) => !EXPECTED.includes(n));
  t.same(unexpected, [], 'every Python test is listed in EXPECTED');
  t.match(output, new RegExp(`^Ran ${EXPECTED.length} tests? in `, 'm'), 'unittest counted exactly the expected tests');
  t.match(output, /^OK$/m, 'unittest reports OK with nothing skipped');

  const counts = Object.fromEntries(
    [...(/^vectors ran: (.*)$/m.exec(output)?.[1] ?? '').matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]),
  );
  for (const key of ['decoder', 'decoder_feeds', 'exchanges', 'exchange_responses']) {
    t.ok((counts[key] ?? 0) > 0, `${key}: ${counts[key] ?? 'none'} ran`);
  }
  t.comment(`python: ${ran.size} tests in ${seconds} s; vectors ${JSON.stringify(counts)}`);
  if (!t.passing()) t.comment(`python output:\n${output}`);
});
