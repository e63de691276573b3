/** `AA-BB-CC-DD-EE-FF` and `aa:bb:cc:dd:ee:ff` are the same device [P-3.3]. */
export function normalizeMac(mac: string): string {
  return mac.toLowerCase().replace(/-/g, ':');
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Phone numbers are compared on digits and a leading '+', ignoring layout. */
export function normalizePhone(phone: string): string {
  return phone.replace(/[\s().-]/g, '');
}
