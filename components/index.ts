import type { ComponentFactory } from './component';

/**
 * The component kinds --comp-class-N can name (after the config loader has mapped Tigase's class
 * names): one folder per component.
 */
export const COMPONENTS: Readonly<Record<string, ComponentFactory>> = {};
