// The one function prcl uses from jstat (which ships no types).
declare module 'jstat' {
  export const jStat: {
    studentt: {
      /** The p-quantile of Student's t with `dof` degrees of freedom. */
      inv(p: number, dof: number): number
      /** P(T <= x) for Student's t with `dof` degrees of freedom. */
      cdf(x: number, dof: number): number
    }
  }
}
