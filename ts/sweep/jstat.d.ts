// What prcl uses of jstat (which ships no types): Student t quantiles and probabilities.
declare module 'jstat' {
  const jstat: { jStat: JStat }
  export default jstat
  interface JStat {
    studentt: {
      /** The p-quantile of Student's t with `dof` degrees of freedom. */
      inv(p: number, dof: number): number
      /** P(T <= x) for Student's t with `dof` degrees of freedom. */
      cdf(x: number, dof: number): number
    }
  }
}
