import { readFileSync } from 'node:fs';

// The list of common passwords a new password may not be (NIST SP 800-63B §5.1.1.2, OWASP ASVS
// V2.1.7) is data, not source: common-passwords.txt beside this file, one entry per line, with its
// origin, how it was made and its MIT License in common-passwords.LICENSE. `npm run build` copies
// both next to the compiled module (scripts/copy-assets.mjs), so the path below works from src/
// (tests) and from dist/ (the service and the container image) alike.
const LIST_FILE = new URL('./common-passwords.txt', import.meta.url);

/** True when `password`, NFKC-normalized and lowercased, is one of the listed common passwords. */
export function isCommonPassword(password: string): boolean {
  const key = commonPasswordKey(password);
  // Binary search: the list is sorted by UTF-16 code units, which is what `<` compares.
  let lo = 0;
  let hi = COMMON_PASSWORDS.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const entry = COMMON_PASSWORDS[mid]!;
    if (entry === key) return true;
    if (entry < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** The form in which passwords are compared with the list: the whole password, case-insensitively. */
export function commonPasswordKey(password: string): string {
  return password.normalize('NFKC').toLowerCase();
}

/**
 * The list, in the order `isCommonPassword` searches. Read once, synchronously, when this module is
 * first imported (passwords.ts is its only importer): about 150 KB, a few milliseconds, and a
 * missing or damaged file stops start-up rather than the first password change.
 */
export const COMMON_PASSWORDS: readonly string[] = readList(LIST_FILE);

function readList(file: URL): readonly string[] {
  const entries = readFileSync(file, 'utf8').split(/\r?\n/);
  if (entries.at(-1) === '') entries.pop();
  // A binary search over a list out of order misses entries without any error: a hand-edited file
  // that breaks the order would quietly let listed passwords through, so it is refused here.
  for (let i = 1; i < entries.length; i++) {
    if (!(entries[i - 1]! < entries[i]!)) {
      throw new Error(`${file.pathname} line ${i + 1}: not after line ${i} (the list must be sorted, without duplicates)`);
    }
  }
  return Object.freeze(entries);
}
