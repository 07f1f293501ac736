export class Tidings {}
