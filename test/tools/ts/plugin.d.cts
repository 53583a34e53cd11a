// Types for tap's plugin build, which type-checks the plugins it links in.
export declare const importLoader: string;
export declare const preload: boolean;
export declare const testFileExtensions: string[];
