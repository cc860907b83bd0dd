import type { ComponentFactory } from './component';
import { createExternal } from './external';
import { createMuc } from './muc/muc';
import { createPubSub } from './pubsub';
import { createUpload } from './upload';

/**
 * The component kinds --comp-class-N can name (after the config loader has mapped Tigase's class
 * names): one folder per component.
 */
export const COMPONENTS: Readonly<Record<string, ComponentFactory>> = {
  muc: createMuc,
  pubsub: createPubSub,
  upload: createUpload,
  external: createExternal,
};
