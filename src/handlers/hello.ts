import type { HelloRequest } from '../protocol/messages.gen.js';
import type { Handler } from './context.js';

/** [P-4.1] Protocol name, version and limits, so a client can adapt before sending anything else. */
export const hello: Handler<HelloRequest> = (services) => ({
  status: 'ok',
  protocol: 'hellwall',
  version: services.protocol.version,
  maxFrameBytes: services.config.maxFrameBytes,
  maxInflight: services.config.maxInflight,
});
