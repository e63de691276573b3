import type { Config } from '../config.js';
import type { AccountService } from '../services/account-service.js';
import type { AdminService } from '../services/admin-service.js';
import type { DeviceService } from '../services/device-service.js';
import type { FaceService } from '../services/face-service.js';
import type { EnrolmentService } from '../services/enrolment-service.js';
import type { PasscodeService } from '../services/passcode-service.js';
import type { RecoveryService } from '../services/recovery-service.js';
import type { SessionService } from '../services/session-service.js';
import type { TokenService } from '../services/token-service.js';
import type { Protocol } from '../protocol/registry.js';
import type { RequestContext } from '../protocol/request-context.js';

// Re-exported so that a handler's whole signature comes from this one module.
export type { RequestContext };

/** What a handler may use: the services, and facts about the connection the request came on. */
export interface Services {
  /** The limits `hello` announces [P-4.1]; each service holds its own part of the configuration. */
  readonly config: Pick<Config, 'maxFrameBytes' | 'maxInflight'>;
  readonly protocol: Protocol;
  readonly passcodes: PasscodeService;
  readonly tokens: TokenService;
  readonly sessions: SessionService;
  readonly admin: AdminService;
  readonly account: AccountService;
  /** device.list, device.rename, admin.user.devices, admin.device.register, admin.device.remove [P-4.40]–[P-4.44]. */
  readonly devices: DeviceService;
  /** totp.enroll, totp.confirm, recovery_codes.regenerate [P-4.14]–[P-4.16]. */
  readonly enrolment: EnrolmentService;
  /** recovery.* [P-4.17]–[P-4.20]. */
  readonly recovery: RecoveryService;
  /** face.enroll, face.confirm, face.remove [P-4.30]. */
  readonly face: FaceService;
}

/** A response body without `id` and `code`; the dispatcher adds those [P-2.4]. */
export type ResponseBody = { status: string } & Record<string, unknown>;

/** One command's handler: gets a request already validated against its schema. */
export type Handler<Req> = (services: Services, request: Req, ctx: RequestContext) => ResponseBody | Promise<ResponseBody>;
