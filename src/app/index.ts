/**
 * The gateway as a library: start it in-process with a configuration (what the CLI does), load
 * and validate policy files, and the types that come with them.
 */
export { startGateway, type RunningGateway } from './server.js';
export { buildConfig, loadConfig, type ConfigEnv, type LoadedConfig } from '../config/load.js';
export { embeddedDefaults } from '../config/embedded.js';
export type { GatewayConfig } from '../config/types.js';
export { ConfigError, GatewayError, ERRORS, type ErrorCode } from '../errors/catalogue.js';
export { createLogger } from '../logging/logger.js';
