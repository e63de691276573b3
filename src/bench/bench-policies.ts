// Authorization policies the benchmarks compare (`bench.js --policy`, `policy-bench.js`). Importing
// this module does nothing.
import { CompiledPolicy, type PolicyDocument } from '../services/policy.js';

export const POLICY_DOMAINS = ['bench', 'inventory', 'billing', 'reports', 'users', 'network', 'devices', 'tickets', 'deploy', 'metrics'] as const;

/**
 * A policy of the size an installation with a few applications might ship: 10 request domains of
 * 5 rules each (50 rules: 40 prefix patterns and 60 exact names), 4 roles, 2 public patterns.
 * `bench.read`, what the load client asks for, is allowed to `user` by an exact name.
 */
export function realisticPolicy(): PolicyDocument {
  return {
    roles: ['user', 'admin', 'auditor', 'operator'],
    public: ['status.read', 'health.*'],
    rules: POLICY_DOMAINS.flatMap((d) => [
      { requests: [`${d}.*`], roles: ['admin'] },
      { requests: [`${d}.read`, `${d}.list`, `${d}.get`], roles: ['user', 'admin', 'auditor', 'operator'] },
      { requests: [`${d}.items.*`, `${d}.items.list`], roles: ['user', 'admin', 'operator'] },
      { requests: [`${d}.items.delete`, `${d}.items.purge`], roles: ['admin'] },
      { requests: [`${d}.export:*`, `${d}.config/*`], roles: ['auditor', 'admin'] },
    ]),
  };
}

/**
 * The floor for comparison: the policy step of a token check with nothing evaluated. Not a policy
 * the file format can express (the cheapest of those, `*` for every role, is the built-in one);
 * the bench server swaps it in for the compiled policy after start-up.
 */
export class AllowAllPolicy extends CompiledPolicy {
  constructor() {
    super({ rules: [{ requests: ['*'], roles: ['user', 'admin'] }] }, { defaultDeny: true, source: 'bench: allow-all' });
  }

  override allows(): boolean {
    return true;
  }
}
