import type { Handler } from './context.js';
import { hello } from './hello.js';
import { passcodeAuth } from './passcode-auth.js';
import { passcodeRequest } from './passcode-request.js';
import { sessionList } from './session-list.js';
import { sessionLogout } from './session-logout.js';
import { sessionLogoutAll } from './session-logout-all.js';
import { tokenCheck } from './token-check.js';

/**
 * Command name (as in protocol/index.json) to handler. Adding a command means: its schemas, a row
 * in the index, a handler file, a line here, and a test; a meta test checks that all exist.
 */
// The request type is already checked by the schema for this command, hence `never` erasure here.
export const HANDLERS: Readonly<Record<string, Handler<never>>> = Object.freeze({
  hello,
  'passcode.request': passcodeRequest,
  'passcode.auth': passcodeAuth,
  'token.check': tokenCheck,
  'session.logout': sessionLogout,
  'session.logout_all': sessionLogoutAll,
  'session.list': sessionList,
});
