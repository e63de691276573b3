import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { CompiledPolicy, DEFAULT_POLICY, PolicyError, PolicyLoader, type PolicyDocument } from '../../src/services/policy.js';
import { ConfigError } from '../../src/config.js';

const EXAMPLE: PolicyDocument = {
  roles: ['user', 'admin', 'auditor'],
  public: ['status.read'],
  rules: [
    { requests: ['inventory.read', 'inventory.*'], roles: ['user', 'admin'] },
    { requests: ['inventory.items.delete'], roles: ['admin'] },
    { requests: ['admin.*'], roles: ['admin'] },
    { requests: ['admin.audit.*'], roles: ['auditor', 'admin'] },
  ],
};

const compile = (doc: PolicyDocument, defaultDeny = true) => new CompiledPolicy(doc, { defaultDeny, source: 'test' });
const loader = (defaultDeny = true) => new PolicyLoader({ file: '', defaultDeny });

t.test('an exact name matches only itself; a trailing * matches every name it prefixes', async (t) => {
  const p = compile(EXAMPLE);
  t.ok(p.allows('user', 'inventory.read'));
  t.ok(p.allows('user', 'inventory.items.list'), 'inventory.* reaches deeper names');
  t.notOk(p.allows('user', 'inventory'), 'inventory.* does not match inventory itself');
  t.notOk(p.allows('user', 'inventoryX'));
  t.ok(p.allows('admin', 'admin.users.list'));
  t.notOk(p.allows('user', 'admin.users.list'));
});

t.test('the most specific pattern decides, whatever the order of the rules', async (t) => {
  const p = compile(EXAMPLE);
  t.notOk(p.allows('user', 'inventory.items.delete'), 'the exact name beats inventory.*');
  t.ok(p.allows('admin', 'inventory.items.delete'));
  t.ok(p.allows('auditor', 'admin.audit.read'), 'admin.audit.* beats admin.*');
  t.notOk(p.allows('auditor', 'admin.users.list'), 'outside admin.audit.* the auditor is not admin');
  const reversed = compile({ ...EXAMPLE, rules: [...EXAMPLE.rules].reverse() });
  for (const role of ['user', 'admin', 'auditor', 'nobody']) {
    for (const req of ['inventory.read', 'inventory.items.delete', 'admin.audit.read', 'admin.x', 'status.read', 'other']) {
      t.equal(reversed.allows(role, req), p.allows(role, req), `${role} ${req}`);
    }
  }
});

t.test('a less specific pattern adds nothing: * for everyone does not open admin.*', async (t) => {
  const p = compile({ rules: [{ requests: ['*'], roles: ['user', 'admin'] }, { requests: ['admin.*'], roles: ['admin'] }] });
  t.ok(p.allows('user', 'anything'));
  t.notOk(p.allows('user', 'admin.users.list'));
  t.ok(p.allows('admin', 'admin.users.list'));
});

t.test('a pattern in several rules allows the union of their roles', async (t) => {
  const p = compile({ rules: [{ requests: ['report.*'], roles: ['user'] }, { requests: ['report.*'], roles: ['admin'] }] });
  t.ok(p.allows('user', 'report.x'));
  t.ok(p.allows('admin', 'report.x'));
});

t.test('public requests are allowed to any role, even one the policy does not know', async (t) => {
  const p = compile(EXAMPLE);
  for (const role of ['user', 'admin', 'auditor', 'contractor']) t.ok(p.allows(role, 'status.read'), role);
  t.notOk(p.allows('contractor', 'inventory.read'));
});

t.test('unlisted requests are denied by default, and allowed to every role with defaultDeny=false', async (t) => {
  t.notOk(compile(EXAMPLE).allows('admin', 'billing.pay'));
  const open = compile(EXAMPLE, false);
  t.ok(open.allows('admin', 'billing.pay'));
  t.ok(open.allows('contractor', 'billing.pay'));
  t.notOk(open.allows('user', 'admin.users.list'), 'a listed request still needs its roles');
});

t.test('the built-in policy allows every request to user and admin, as before policies', async (t) => {
  const p = loader().load();
  t.equal(p.source, 'built-in');
  t.same(p.roles, ['user', 'admin']);
  for (const req of ['inventory.read', 'admin.x', 'a', 'x/y:z-1_2']) {
    t.ok(p.allows('user', req));
    t.ok(p.allows('admin', req));
  }
  t.notOk(p.allows('contractor', 'inventory.read'), 'a role it does not name is denied');
  t.same(DEFAULT_POLICY.rules[0]?.requests, ['*']);
});

t.test('cached decisions equal uncached ones, and stay bounded under many distinct names', async (t) => {
  const p = compile(EXAMPLE);
  const names = ['inventory.read', 'inventory.items.delete', 'admin.audit.x', 'admin.y', 'status.read', 'zzz'];
  for (let round = 0; round < 3; round++) {
    for (const role of ['user', 'admin', 'auditor']) {
      for (const n of names) t.equal(p.allows(role, n), p.decide(role, n));
    }
  }
  // Past the bound the cache starts over; answers stay right.
  for (let i = 0; i < 10_000; i++) p.allows('user', `inventory.n${i}`);
  t.ok(p.allows('user', 'inventory.n0'));
  t.notOk(p.allows('user', 'admin.n0'));
});

t.test('a reload compiles a new policy: decisions cached under the old one do not survive it', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-policy-'));
  const file = path.join(dir, 'policy.json');
  writeFileSync(file, JSON.stringify({ rules: [{ requests: ['inventory.*'], roles: ['user'] }] }));
  const l = new PolicyLoader({ file, defaultDeny: true });
  const first = l.load();
  t.ok(first.allows('user', 'inventory.read'));
  writeFileSync(file, JSON.stringify({ rules: [{ requests: ['inventory.*'], roles: ['admin'] }] }));
  const second = l.load();
  t.notOk(second.allows('user', 'inventory.read'));
  t.ok(second.allows('admin', 'inventory.read'));
  t.ok(first.allows('user', 'inventory.read'), 'the old policy object is untouched (a failed reload keeps it)');
  t.equal(second.source, file);
});

t.test('malformed policies are refused with a message naming the problem', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['not JSON', '{"rules": [', /^not JSON: /],
    ['not an object', '[]', /^\/ must be object$/],
    ['no rules', '{}', /^\/ must have required property 'rules'$/],
    ['an unknown key', '{"rules": [], "rule": []}', /^\/ must NOT have additional properties: rule$/],
    ['an unknown key in a rule', '{"rules": [{"requests": ["a"], "roles": ["user"], "role": "x"}]}', /^\/rules\/0 must NOT have additional properties: role$/],
    ['a rule without roles', '{"rules": [{"requests": ["a"]}]}', /^\/rules\/0 must have required property 'roles'$/],
    ['an empty roles list', '{"rules": [{"requests": ["a"], "roles": []}]}', /^\/rules\/0\/roles must NOT have fewer than 1 items$/],
    ['a bad role name', '{"rules": [{"requests": ["a"], "roles": ["Admin"]}]}', /^\/rules\/0\/roles\/0 must match pattern/],
    ['a * in the middle', '{"rules": [{"requests": ["a*.b"], "roles": ["user"]}]}', /^\/rules\/0\/requests\/0 must match pattern/],
    ['a character a request cannot have', '{"rules": [{"requests": ["a b"], "roles": ["user"]}]}', /^\/rules\/0\/requests\/0 must match pattern/],
    ['an empty pattern', '{"public": [""], "rules": []}', /^\/public\/0 must NOT have fewer than 1 characters$/],
    ['a duplicate role', '{"roles": ["user", "user"], "rules": []}', /^\/roles must NOT have duplicate items/],
    ['an undeclared role', '{"roles": ["user"], "rules": [{"requests": ["a"], "roles": ["admin"]}]}', /^\/rules\/0\/roles: role admin is not declared in \/roles$/],
    ['a public pattern in a rule', '{"public": ["a"], "rules": [{"requests": ["a"], "roles": ["user"]}]}', /^\/rules\/0\/requests: a is also listed in \/public$/],
  ];
  const l = loader();
  for (const [what, text, message] of cases) {
    const err = t.throws(() => l.parse(text, 'test'), what) as Error;
    t.type(err, PolicyError, what);
    t.match(err.message, message, what);
  }
  t.ok(l.parse('{"$comment": "ok", "rules": [{"$comment": "ok", "requests": ["*"], "roles": ["user"]}]}', 'test'), '$comment is allowed');
});

t.test('a file that cannot be read or is malformed: a ConfigError naming the file', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-policy-'));
  const missing = path.join(dir, 'missing.json');
  const err1 = t.throws(() => new PolicyLoader({ file: missing, defaultDeny: true }).load()) as Error;
  t.type(err1, ConfigError);
  t.match(err1.message, `cannot read policy file ${missing}: ENOENT`);
  const bad = path.join(dir, 'bad.json');
  writeFileSync(bad, '{"rules": [{"requests": ["a"], "roles": ["user"], "oops": 1}]}');
  const err2 = t.throws(() => new PolicyLoader({ file: bad, defaultDeny: true }).load()) as Error;
  t.equal(err2.message, `invalid policy file ${bad}: /rules/0 must NOT have additional properties: oops`);
});
