import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { ConfigError } from '../config.js';

/** What a policy file holds (validated by `POLICY_SCHEMA`). */
export interface PolicyDocument {
  /** Roles the rules may name; when given, a rule naming any other role is refused. */
  readonly roles?: readonly string[];
  /** Request patterns any valid token may make, whatever its role. */
  readonly public?: readonly string[];
  readonly rules: ReadonlyArray<{ readonly requests: readonly string[]; readonly roles: readonly string[] }>;
}

/**
 * Used when `policy.file` is empty: every request allowed to both built-in roles, which is what
 * token.check answered before policies existed. Production should ship a policy of its own.
 */
export const DEFAULT_POLICY: PolicyDocument = Object.freeze({
  rules: Object.freeze([Object.freeze({ requests: Object.freeze(['*']), roles: Object.freeze(['user', 'admin']) })]),
});

const ROLE = { type: 'string', pattern: '^[a-z][a-z0-9_-]{0,31}$' } as const;
// A token.check `request` name ([P-4.4] schema: 1–128 of [A-Za-z0-9_.:/-]) with an optional
// trailing `*`, or `*` alone.
const PATTERN = { type: 'string', minLength: 1, maxLength: 129, pattern: '^(?:[A-Za-z0-9_.:/-]+\\*?|\\*)$' } as const;
const COMMENT = { type: 'string' } as const;

/** The policy file's JSON Schema (draft-07, as the protocol's); unknown keys are refused. */
export const POLICY_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'Hellwall authorization policy',
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  properties: {
    $comment: COMMENT,
    roles: { type: 'array', minItems: 1, uniqueItems: true, items: ROLE },
    public: { type: 'array', uniqueItems: true, items: PATTERN },
    rules: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['requests', 'roles'],
        properties: {
          $comment: COMMENT,
          requests: { type: 'array', minItems: 1, uniqueItems: true, items: PATTERN },
          roles: { type: 'array', minItems: 1, uniqueItems: true, items: ROLE },
        },
      },
    },
  },
} as const;

/** A policy file that cannot be read or is not a valid policy. At start-up it stops the server like a config error. */
export class PolicyError extends ConfigError {
  override name = 'PolicyError';
}

// `null`: any role (a public pattern, or an unlisted request when the default is to allow).
type Allowed = ReadonlySet<string> | null;

// Decisions cached per role; each role's table is cleared when full, so a client sending endless
// distinct request names costs memory only up to this bound.
const CACHE_PER_ROLE = 4096;

/**
 * One policy, compiled: exact names in a Map, prefix patterns longest first. The most specific
 * pattern that matches decides (an exact name, else the longest prefix; `*` is the empty prefix);
 * patterns less specific than it add nothing. Decisions are cached, so the hot path is a Map
 * lookup. Immutable apart from its cache: a reload compiles a new one, which starts with an empty
 * cache.
 */
export class CompiledPolicy {
  /** Roles declared by the file, or named by its rules when it declares none. */
  readonly roles: readonly string[];
  readonly defaultDeny: boolean;
  /** Where it came from: the file name, or `built-in`. */
  readonly source: string;
  readonly ruleCount: number;
  readonly #exact = new Map<string, Allowed>();
  readonly #prefixes: Array<{ prefix: string; allowed: Allowed }> = [];
  readonly #cache = new Map<string, Map<string, boolean>>();

  constructor(doc: PolicyDocument, opts: { defaultDeny: boolean; source: string }) {
    this.defaultDeny = opts.defaultDeny;
    this.source = opts.source;
    this.ruleCount = doc.rules.length;
    const declared = doc.roles ? new Set(doc.roles) : null;
    const named = new Set<string>();
    const byPattern = new Map<string, Set<string> | null>();
    for (const pattern of doc.public ?? []) byPattern.set(pattern, null);
    doc.rules.forEach((rule, i) => {
      for (const role of rule.roles) {
        if (declared && !declared.has(role)) throw new PolicyError(`/rules/${i}/roles: role ${role} is not declared in /roles`);
        named.add(role);
      }
      for (const pattern of rule.requests) {
        if (!byPattern.has(pattern)) byPattern.set(pattern, new Set());
        const roles = byPattern.get(pattern);
        // A public pattern in a rule as well would make the rule meaningless: refused as a likely mistake.
        if (roles === null) throw new PolicyError(`/rules/${i}/requests: ${pattern} is also listed in /public`);
        for (const role of rule.roles) roles!.add(role);
      }
    });
    for (const [pattern, allowed] of byPattern) {
      if (pattern.endsWith('*')) this.#prefixes.push({ prefix: pattern.slice(0, -1), allowed });
      else this.#exact.set(pattern, allowed);
    }
    this.#prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    this.roles = Object.freeze([...(declared ?? named)]);
  }

  /** Whether a token of `role` may make `request`. Never throws. */
  allows(role: string, request: string): boolean {
    let decisions = this.#cache.get(role);
    if (decisions === undefined) {
      decisions = new Map();
      this.#cache.set(role, decisions);
    }
    const cached = decisions.get(request);
    if (cached !== undefined) return cached;
    const decision = this.decide(role, request);
    if (decisions.size >= CACHE_PER_ROLE) decisions.clear();
    decisions.set(request, decision);
    return decision;
  }

  /** `allows` without the cache (tests compare the two; benchmarks measure both). */
  decide(role: string, request: string): boolean {
    const allowed = this.#match(request);
    if (allowed === undefined) return !this.defaultDeny;
    return allowed === null || allowed.has(role);
  }

  #match(request: string): Allowed | undefined {
    const exact = this.#exact.get(request);
    if (exact !== undefined) return exact;
    for (const p of this.#prefixes) if (request.startsWith(p.prefix)) return p.allowed;
    return undefined;
  }
}

/**
 * Reads, validates and compiles policy files. The validator is compiled once, here; `load` runs
 * at start-up and on every reload.
 */
export class PolicyLoader {
  readonly #validate: ValidateFunction;
  readonly #file: string;
  readonly #defaultDeny: boolean;

  constructor(opts: { file: string; defaultDeny: boolean }) {
    this.#file = opts.file;
    this.#defaultDeny = opts.defaultDeny;
    const ajv = new Ajv({ allErrors: false, strict: true });
    this.#validate = ajv.compile(POLICY_SCHEMA);
  }

  /** The configured policy file, or the built-in default when none is configured. Throws PolicyError. */
  load(): CompiledPolicy {
    if (!this.#file) return new CompiledPolicy(DEFAULT_POLICY, { defaultDeny: this.#defaultDeny, source: 'built-in' });
    let text: string;
    try {
      text = readFileSync(this.#file, 'utf8');
    } catch (err) {
      throw new PolicyError(`cannot read policy file ${this.#file}: ${(err as Error).message}`);
    }
    try {
      return this.parse(text, this.#file);
    } catch (err) {
      throw new PolicyError(`invalid policy file ${this.#file}: ${(err as Error).message}`);
    }
  }

  /** Validates and compiles a policy document given as JSON text. Throws PolicyError naming the problem. */
  parse(text: string, source: string): CompiledPolicy {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new PolicyError(`not JSON: ${(err as Error).message}`);
    }
    if (!this.#validate(doc)) throw new PolicyError(describe(this.#validate.errors?.[0]));
    return new CompiledPolicy(doc as PolicyDocument, { defaultDeny: this.#defaultDeny, source });
  }
}

function describe(e: ErrorObject | undefined): string {
  if (!e) return 'does not match the policy schema';
  const where = e.instancePath || '/';
  const extra = e.keyword === 'additionalProperties' ? `: ${String((e.params as { additionalProperty: string }).additionalProperty)}` : '';
  return `${where} ${e.message ?? 'is invalid'}${extra}`;
}
