/**
 * The `storage` section of the policy file: where blobs live (filesystem, S3, Azure Blob) and how.
 * Secrets are never in it: keys and credentials are named by the file or variable that holds them.
 */
export const storageSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    driver: { enum: ['filesystem', 's3', 'azure'], default: 'filesystem' },
    filesystem: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        directory: { type: 'string', minLength: 1, default: 'data/blobs' },
        encryption: {
          type: 'object',
          additionalProperties: false,
          required: ['activeKey', 'keys'],
          properties: {
            activeKey: { type: 'string', minLength: 1, maxLength: 255 },
            keys: {
              type: 'array',
              minItems: 1,
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['id'],
                properties: {
                  id: { type: 'string', minLength: 1, maxLength: 255 },
                  file: { type: 'string', minLength: 1 },
                  env: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
                },
              },
            },
          },
        },
      },
    },
    s3: {
      type: 'object',
      additionalProperties: false,
      required: ['bucket'],
      properties: {
        bucket: { type: 'string', minLength: 1 },
        region: { type: 'string', minLength: 1, default: 'us-east-1' },
        endpoint: { type: 'string', pattern: '^https?://' },
        forcePathStyle: { type: 'boolean', default: false },
        prefix: { type: 'string', default: '' },
        accessKeyIdEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
        secretAccessKeyEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
        serverSideEncryption: { enum: ['AES256', 'aws:kms', 'aws:kms:dsse'] },
        sseKmsKeyId: { type: 'string', minLength: 1 },
        partSizeBytes: { type: 'integer', minimum: 5_242_880, default: 8_388_608 },
        queueSize: { type: 'integer', minimum: 1, maximum: 16, default: 2 },
      },
    },
    azure: {
      type: 'object',
      additionalProperties: false,
      required: ['container'],
      properties: {
        container: { type: 'string', minLength: 3 },
        prefix: { type: 'string', default: '' },
        connectionStringEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
        accountName: { type: 'string', minLength: 1 },
        accountKeyEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
        url: { type: 'string', pattern: '^https?://' },
        sasTokenEnv: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
        blockSizeBytes: { type: 'integer', minimum: 65_536, default: 4_194_304 },
        concurrency: { type: 'integer', minimum: 1, maximum: 16, default: 2 },
      },
    },
  },
} as const;
