import { CUSTOM_STRATEGY } from '../helpers/cluster';
import { messagingCases } from '../helpers/messaging-cases';

messagingCases(CUSTOM_STRATEGY, 'sqlite');
