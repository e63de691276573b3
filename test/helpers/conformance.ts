import type { Protocol } from '../../src/protocol/registry.js';

/**
 * Says what is wrong with a response under the contract in protocol/, or null when nothing is:
 * it must match its schema, and an error must be one its command may answer (index.json), or a
 * framing error without id and code, or E_UNKNOWN_COMMAND for a code that names no command.
 * The harness applies it to every response a test client receives.
 */
export function responseViolation(protocol: Protocol, response: Record<string, unknown>): string | null {
  const code = response.code;
  if (response.status === 'error') {
    if (!protocol.validateError(response)) return `error response fails error.response.json: ${JSON.stringify(protocol.validateError.errors)}`;
    const error = response.error as string;
    const entry = protocol.errors.get(error)!;
    if (entry.closes) {
      return 'id' in response || 'code' in response ? `${error} closes the connection and must carry neither id nor code [P-1.5]` : null;
    }
    if (code === undefined) return error === 'E_SCHEMA' ? null : `${error} without code: only E_SCHEMA (code missing or not an integer) may omit it`;
    const command = protocol.commands.get(code as number);
    if (!command) return error === 'E_UNKNOWN_COMMAND' ? null : `${error} for code ${String(code)}, which names no command`;
    return command.errors.includes(error) ? null : `${command.name} may not answer ${error}: index.json lists ${command.errors.join(', ')}`;
  }
  const command = typeof code === 'number' ? protocol.commands.get(code) : undefined;
  if (!command) return `response with status ${String(response.status)} for code ${String(code)}, which names no command`;
  return command.validateResponse(response) ? null : `${command.response}: ${JSON.stringify(command.validateResponse.errors)}`;
}
