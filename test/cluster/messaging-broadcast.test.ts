import { messagingCases } from '../helpers/messaging-cases';

messagingCases('broadcast', 'mysql');
