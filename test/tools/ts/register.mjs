// `--import` target of the tap plugin (plugin.cjs): registers the module hooks.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
