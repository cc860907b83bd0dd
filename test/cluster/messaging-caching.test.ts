import { messagingCases } from '../helpers/messaging-cases';

messagingCases('online-users-caching', 'pgsql');
