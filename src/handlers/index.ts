import { adminAuditQuery } from './admin-audit-query.js';
import { adminSessionList } from './admin-session-list.js';
import { adminSessionRevoke } from './admin-session-revoke.js';
import { adminSessionRevokeUser } from './admin-session-revoke-user.js';
import { adminStats } from './admin-stats.js';
import { adminUserAdd } from './admin-user-add.js';
import { adminUserDelete } from './admin-user-delete.js';
import { adminUserDisable } from './admin-user-disable.js';
import { adminUserEnable } from './admin-user-enable.js';
import { adminUserList } from './admin-user-list.js';
import { adminUserResetPassword } from './admin-user-reset-password.js';
import { adminUserSetRole } from './admin-user-set-role.js';
import { adminUserShow } from './admin-user-show.js';
import { adminUserDevices } from './admin-user-devices.js';
import { adminDeviceRegister } from './admin-device-register.js';
import { adminDeviceRemove } from './admin-device-remove.js';
import { deviceList } from './device-list.js';
import { deviceRename } from './device-rename.js';
import type { Handler } from './context.js';
import { hello } from './hello.js';
import { passcodeAuth } from './passcode-auth.js';
import { passcodeRequest } from './passcode-request.js';
import { passwordChange } from './password-change.js';
import { sessionList } from './session-list.js';
import { sessionLogout } from './session-logout.js';
import { sessionLogoutAll } from './session-logout-all.js';
import { sessionRevoke } from './session-revoke.js';
import { tokenCheck } from './token-check.js';
import { recoveryCodesRegenerate } from './recovery-codes-regenerate.js';
import { recoveryDevice } from './recovery-device.js';
import { recoveryPassword } from './recovery-password.js';
import { recoveryRequest } from './recovery-request.js';
import { recoveryTotp } from './recovery-totp.js';
import { totpConfirm } from './totp-confirm.js';
import { totpEnroll } from './totp-enroll.js';
import { faceConfirm } from './face-confirm.js';
import { faceEnroll } from './face-enroll.js';
import { faceRemove } from './face-remove.js';

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
  'session.revoke': sessionRevoke,
  'admin.user.add': adminUserAdd,
  'admin.user.list': adminUserList,
  'admin.user.show': adminUserShow,
  'admin.user.disable': adminUserDisable,
  'admin.user.enable': adminUserEnable,
  'admin.user.set_role': adminUserSetRole,
  'admin.user.reset_password': adminUserResetPassword,
  'admin.user.delete': adminUserDelete,
  'admin.session.list': adminSessionList,
  'admin.session.revoke': adminSessionRevoke,
  'admin.session.revoke_user': adminSessionRevokeUser,
  'admin.stats': adminStats,
  'admin.audit.query': adminAuditQuery,
  'password.change': passwordChange,
  'device.list': deviceList,
  'device.rename': deviceRename,
  'admin.user.devices': adminUserDevices,
  'admin.device.register': adminDeviceRegister,
  'admin.device.remove': adminDeviceRemove,
  'totp.enroll': totpEnroll,
  'totp.confirm': totpConfirm,
  'recovery_codes.regenerate': recoveryCodesRegenerate,
  'recovery.request': recoveryRequest,
  'recovery.password': recoveryPassword,
  'recovery.totp': recoveryTotp,
  'recovery.device': recoveryDevice,
  'face.enroll': faceEnroll,
  'face.confirm': faceConfirm,
  'face.remove': faceRemove,
});
